"""Start simscore on loopback, run locust headless against it, print what users would feel.

    python load/run_load.py --users 4,8,16 --duration-s 60       # `make load`
    python load/run_load.py --soak --pairs-per-s 0.8 --users 8   # `make soak` (10 min)

For each user count in ``--users`` (one warm server for the whole sweep) it runs
``locust --headless`` with ``load/locustfile.py`` and prints requests/s, pairs/s (scored by
the model, from ``/metrics``), p50/p95/p99 of the scoring requests, failures, 429s, 5xx, the
mean batch size (``simscore_batch_size`` sum/count deltas) and, as the baseline measured in the
same run, the model's own rate while it computes (pairs per second of
``simscore_inference_seconds``) and the share of the run it was busy. Locust's CSV and HTML
reports, the server log and ``summary.json`` go to ``results/load-<time>/``.

``--soak`` first sends every payload as a full batch of copies, then all of them together (so
the bounded reference cache is full and the largest batch of every shape has run), then runs
one step (default 600 s) paced at ``--pairs-per-s`` (about 80 % of the peak a sweep measured)
and samples the server's RSS (``/proc/PID/status`` VmRSS) and reference-cache bytes every few
seconds: it passes when there is no 5xx and no failed check, and the RSS after ``--warmup-s``
grows by less than ``--max-rss-growth``. The exit status is non-zero on any failure; the
server is always stopped.

The server gets ``SIMSCORE_WEIGHTS`` from ``--weights``; by default a seeded random VGG19 file
that this script writes under ``results/`` with ``simscore make-random-weights``. Timing does not
depend on the weights' values.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from types import FrameType
from typing import Any

import httpx
from prometheus_client.parser import text_string_to_metric_families

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # `python load/run_load.py` from anywhere: devtools, load

from devtools.env import child_env, python_path  # noqa: E402
from devtools.servers import serve_process  # noqa: E402

LOCUSTFILE = Path(__file__).resolve().parent / "locustfile.py"
BIN = Path(sys.executable).parent
CLI = (sys.executable, "-m", "app.cli")
READY_TIMEOUT_S = 600.0
LOCUST_START_TIMEOUT_S = 120.0


@dataclass
class Counters:
    """The ``/metrics`` values a run is judged by (cumulative)."""

    batch_sum: float = 0.0
    batch_count: float = 0.0
    responses: float = 0.0
    status_5xx: float = 0.0
    status_429: float = 0.0
    cache_hits: float = 0.0
    cache_misses: float = 0.0
    inference_s: float = 0.0
    cache_bytes: float = 0.0
    queue_depth: float = 0.0

    def minus(self, earlier: Counters) -> Counters:
        values = {k: v - getattr(earlier, k) for k, v in asdict(self).items()}
        values["queue_depth"] = self.queue_depth
        values["cache_bytes"] = self.cache_bytes
        return Counters(**values)


@dataclass
class StepResult:
    """One locust run: what the table prints and ``summary.json`` keeps."""

    users: int
    duration_s: float
    requests: int
    requests_per_s: float
    pairs: int
    pairs_per_s: float
    p50_ms: float
    p95_ms: float
    p99_ms: float
    failures: int
    backpressure_429: int
    server_5xx: int
    mean_batch_size: float
    model_pairs_per_s: float
    model_busy: float
    cache_hit_ratio: float
    rss_start_mib: float
    rss_end_mib: float
    locust_exit: int
    failure_messages: dict[str, int]


# -- server ------------------------------------------------------------------------------------


def ensure_weights(path: Path, seed: int) -> Path:
    """Write a seeded random VGG19 ``features`` file with the CLI unless it exists."""
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            [*CLI, "make-random-weights", "--out", str(path), "--seed", str(seed)],
            check=True,
            cwd=ROOT,
        )
    return path


def rss_mib(pid: int) -> float:
    """Resident set size of ``pid`` (VmRSS), in MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for pid {pid}")


def scrape(base_url: str) -> Counters:
    """Read the counters this script reports from the Prometheus text at ``/metrics``."""
    text = httpx.get(f"{base_url}/metrics", timeout=10).text
    out = Counters()
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            name, labels, value = sample.name, sample.labels, sample.value
            if name == "simscore_batch_size_sum":
                out.batch_sum = value
            elif name == "simscore_batch_size_count":
                out.batch_count = value
            elif name == "simscore_requests_total":
                out.responses += value
                code = labels.get("status", "")
                if code.startswith("5"):
                    out.status_5xx += value
                elif code == "429":
                    out.status_429 += value
            elif name == "simscore_reference_cache_hits_total":
                out.cache_hits = value
            elif name == "simscore_reference_cache_misses_total":
                out.cache_misses = value
            elif name == "simscore_inference_seconds_sum":
                out.inference_s = value
            elif name == "simscore_reference_cache_bytes":
                out.cache_bytes = value
            elif name == "simscore_queue_depth":
                out.queue_depth = value
    return out


def wait_idle(base_url: str, timeout_s: float = 120.0) -> None:
    """Let work left over from the previous step finish before the next one starts."""
    deadline = time.monotonic() + timeout_s
    previous = -1.0
    while time.monotonic() < deadline:
        now = scrape(base_url)
        if now.queue_depth == 0 and now.batch_count == previous:
            return
        previous = now.batch_count
        time.sleep(2)


def wait_for_file(path: Path, process: subprocess.Popen[bytes], timeout_s: float) -> None:
    """Wait until ``path`` exists; fail if ``process`` exits first or time runs out."""
    deadline = time.monotonic() + timeout_s
    while not path.exists():
        if process.poll() is not None:
            raise RuntimeError(f"locust exited with {process.returncode} before starting")
        if time.monotonic() > deadline:
            raise RuntimeError(f"locust did not start within {timeout_s:.0f} s")
        time.sleep(0.1)


# -- one locust run ----------------------------------------------------------------------------


class RssSampler(threading.Thread):
    """Samples the server's RSS (and its reference cache's bytes, which the RSS includes)
    every ``interval_s`` into a list and a CSV file."""

    def __init__(self, pid: int, base_url: str, interval_s: float, csv_path: Path) -> None:
        super().__init__(daemon=True)
        self.pid = pid
        self.base_url = base_url
        self.interval_s = interval_s
        self.csv_path = csv_path
        self.samples: list[tuple[float, float]] = []
        self.halt = threading.Event()

    def run(self) -> None:
        started = time.monotonic()
        with self.csv_path.open("w") as out:
            out.write("elapsed_s,rss_mib,reference_cache_mib\n")
            while not self.halt.is_set():
                try:
                    sample = (time.monotonic() - started, rss_mib(self.pid))
                    cache_mib = scrape(self.base_url).cache_bytes / 2**20
                except (OSError, RuntimeError, httpx.HTTPError):
                    return
                self.samples.append(sample)
                out.write(f"{sample[0]:.1f},{sample[1]:.1f},{cache_mib:.1f}\n")
                out.flush()
                self.halt.wait(self.interval_s)


def prime(base_url: str, scale: float, batch_size: int) -> int:
    """Send every payload of the traffic as full batches, then once more all mixed together.

    Before a soak's RSS window: the reference cache then holds every golden image the traffic
    uses, and the allocator has served the largest batch of every shape (``batch_size`` copies
    of each payload at once), so what the window measures is growth (a leak), not the service
    reaching the high-water marks of its bounded caches and heap.
    """
    from load import traffic

    Request = tuple[str, list[tuple[str, traffic.Upload]]]
    load = traffic.build_traffic(scale)
    requests: list[Request] = []
    with httpx.Client(base_url=base_url, timeout=600) as client:
        field = traffic.batch_field(client.get("/openapi.json").json())
        for pair in (*load.square_224, *load.square_512, *load.mixed_sizes, *load.identical):
            requests.append(
                ("/compare", [("reference", pair.reference), ("candidate", pair.candidate)])
            )
        board = load.dashboard
        if field is not None:
            files = [("reference", board.reference)] + [(field, c) for c in board.candidates]
            requests.append(("/compare/batch", files))

        def send(request: Request) -> int:
            return client.post(request[0], files=request[1]).status_code

        statuses: list[int] = []
        with ThreadPoolExecutor(batch_size) as pool:
            for request in requests:  # a full batch of each payload's shape
                statuses += list(pool.map(send, [request] * batch_size))
            statuses += list(pool.map(send, requests))  # and every shape mixed together
    bad = [code for code in statuses if code != 200]
    if bad:
        raise RuntimeError(f"priming got non-200 answers: {sorted(set(bad))}")
    return len(statuses)


def run_locust(
    base_url: str,
    server: subprocess.Popen[bytes],
    users: int,
    spawn_rate: float,
    duration_s: int,
    out_dir: Path,
    extra_env: Mapping[str, str],
) -> StepResult:
    """One headless locust run; counters are read at its start and after ``duration_s``."""
    prefix = out_dir / f"locust_u{users}"
    summary_path = out_dir / f"locust_u{users}_summary.json"
    command = [
        str(BIN / "locust"),
        "-f",
        str(LOCUSTFILE),
        "--headless",
        "--only-summary",
        "-u",
        str(users),
        "-r",
        f"{spawn_rate:g}",
        "-t",
        f"{duration_s}s",
        "--host",
        base_url,
        "--csv",
        str(prefix),
        "--html",
        f"{prefix}.html",
        "--loglevel",
        "WARNING",
    ]
    started_path = out_dir / f"locust_u{users}.started"
    env = child_env(
        {
            **extra_env,
            "SIMSCORE_LOAD_SUMMARY": str(summary_path),
            "SIMSCORE_LOAD_STARTED": str(started_path),
            "PYTHONPATH": python_path(ROOT, base=extra_env),
        }
    )
    with (out_dir / f"locust_u{users}.log").open("wb") as log:
        locust = subprocess.Popen(command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
        try:
            # The window is locust's -t from its first user on, not its import and set-up.
            wait_for_file(started_path, locust, LOCUST_START_TIMEOUT_S)
            before = scrape(base_url)
            rss_start = rss_mib(server.pid)
            started = time.monotonic()
            # Read the server's counters when the load stops, before locust's own shutdown.
            time.sleep(max(0.0, started + duration_s - time.monotonic()))
            after = scrape(base_url)
            elapsed = time.monotonic() - started
            rss_end = rss_mib(server.pid)
            exit_code = locust.wait(duration_s + 120)
        finally:
            if locust.poll() is None:
                locust.terminate()
                locust.wait(30)
    final = scrape(base_url).minus(before)  # 5xx and 429 over the whole run, tail included
    delta = after.minus(before)
    summary: dict[str, Any] = json.loads(summary_path.read_text()) if summary_path.exists() else {}
    lookups = delta.cache_hits + delta.cache_misses
    return StepResult(
        users=users,
        duration_s=round(elapsed, 1),
        requests=int(summary.get("requests", 0)),
        requests_per_s=round(float(summary.get("requests_per_s", 0.0)), 3),
        pairs=int(delta.batch_sum),
        pairs_per_s=round(delta.batch_sum / elapsed, 3),
        p50_ms=float(summary.get("scoring_p50_ms", 0)),
        p95_ms=float(summary.get("scoring_p95_ms", 0)),
        p99_ms=float(summary.get("scoring_p99_ms", 0)),
        failures=int(summary.get("failures", -1)),
        backpressure_429=int(final.status_429),
        server_5xx=int(final.status_5xx),
        mean_batch_size=round(delta.batch_sum / delta.batch_count, 2) if delta.batch_count else 0,
        model_pairs_per_s=round(delta.batch_sum / delta.inference_s, 3) if delta.inference_s else 0,
        model_busy=round(delta.inference_s / elapsed, 3),
        cache_hit_ratio=round(delta.cache_hits / lookups, 3) if lookups else 0.0,
        rss_start_mib=round(rss_start, 1),
        rss_end_mib=round(rss_end, 1),
        locust_exit=exit_code,
        failure_messages=dict(summary.get("failure_messages", {})),
    )


# -- reporting ---------------------------------------------------------------------------------

COLUMNS: tuple[tuple[str, str], ...] = (
    ("users", "users"),
    ("duration_s", "secs"),
    ("requests_per_s", "req/s"),
    ("pairs_per_s", "pairs/s"),
    ("p50_ms", "p50 ms"),
    ("p95_ms", "p95 ms"),
    ("p99_ms", "p99 ms"),
    ("requests", "requests"),
    ("failures", "failures"),
    ("backpressure_429", "429"),
    ("server_5xx", "5xx"),
    ("mean_batch_size", "batch"),
    ("model_pairs_per_s", "model pairs/s"),
    ("model_busy", "busy"),
    ("cache_hit_ratio", "cache hit"),
    ("rss_end_mib", "RSS MiB"),
)


def table(results: Sequence[StepResult]) -> str:
    """A Markdown table (it pastes into docs/benchmarks.md as is)."""
    head = "| " + " | ".join(title for _, title in COLUMNS) + " |"
    rule = "|" + "|".join("---:" for _ in COLUMNS) + "|"
    rows = ["| " + " | ".join(f"{getattr(r, key):g}" for key, _ in COLUMNS) + " |" for r in results]
    return "\n".join([head, rule, *rows])


def rss_growth(
    samples: Sequence[tuple[float, float]], warmup_s: float, window_s: float
) -> dict[str, float]:
    """RSS after warm-up (median of the first ``window_s`` after it) against the end (median
    of the last ``window_s``) and the highest sample after warm-up."""
    after = [(t, r) for t, r in samples if t >= warmup_s]
    if len(after) < 2:
        raise RuntimeError("too few RSS samples after warm-up; run longer or sample faster")
    t0, t_end = after[0][0], after[-1][0]
    base = statistics.median(r for t, r in after if t <= t0 + window_s)
    end = statistics.median(r for t, r in after if t >= t_end - window_s)
    peak = max(r for _, r in after)
    return {
        "base_mib": round(base, 1),
        "end_mib": round(end, 1),
        "max_mib": round(peak, 1),
        "growth": round(end / base - 1, 4),
        "max_growth": round(peak / base - 1, 4),
    }


# -- main --------------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--users", default="4,8,16", help="comma-separated user counts (a sweep)")
    parser.add_argument("--duration-s", type=int, default=None, help="per step (60; soak 600)")
    parser.add_argument("--spawn-rate", type=float, default=None, help="users/s (default: users/5)")
    parser.add_argument(
        "--weights", default=None, help="SIMSCORE_WEIGHTS (default: seeded random file)"
    )
    parser.add_argument("--results", type=Path, default=ROOT / "results", help="parent folder")
    parser.add_argument(
        "--server-env",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="extra environment for the server (repeatable), e.g. SIMSCORE_MAX_BATCH_SIZE=4",
    )
    parser.add_argument(
        "--scale", type=float, default=1.0, help="SIMSCORE_LOAD_SCALE (image sides)"
    )
    parser.add_argument("--soak", action="store_true", help="one long paced run with RSS checks")
    parser.add_argument("--pairs-per-s", type=float, default=0.0, help="offered pair rate (pacing)")
    parser.add_argument("--warmup-s", type=float, default=120.0, help="soak: RSS warm-up")
    parser.add_argument("--rss-interval-s", type=float, default=5.0)
    parser.add_argument("--rss-window-s", type=float, default=60.0, help="soak: median window")
    parser.add_argument("--max-rss-growth", type=float, default=0.05)
    parser.add_argument(
        "--no-prime",
        dest="prime",
        action="store_false",
        help="soak: skip sending every payload before the RSS window",
    )
    return parser.parse_args(argv)


def _raise_on_signal(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, _raise_on_signal)  # unwind: the server is always stopped
    users_list = [int(u) for u in str(args.users).split(",") if u.strip()]
    if args.soak and len(users_list) != 1:
        raise SystemExit("--soak takes one --users value")
    duration_s = args.duration_s or (600 if args.soak else 60)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    out_dir = args.results / f"{'soak' if args.soak else 'load'}-{stamp}"
    out_dir.mkdir(parents=True, exist_ok=True)
    weights = args.weights or str(
        ensure_weights(args.results / "weights" / "vgg19-random-seed0.pth", 0)
    )
    server_env = {"SIMSCORE_WEIGHTS": weights, "SIMSCORE_LOG_LEVEL": "warning"}
    server_env.update(dict(item.split("=", 1) for item in args.server_env))
    locust_env = {"SIMSCORE_LOAD_SCALE": f"{args.scale:g}"}
    if args.pairs_per_s > 0:
        locust_env["SIMSCORE_LOAD_PAIRS_PER_S"] = f"{args.pairs_per_s:g}"
    meta: dict[str, Any] = {
        "command": " ".join(
            [Path(sys.argv[0]).name, *(argv if argv is not None else sys.argv[1:])]
        ),
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "machine": machine(),
        "server_env": {k: v for k, v in server_env.items()},
        "locust_env": locust_env,
    }
    results: list[StepResult] = []
    soak: dict[str, Any] = {}
    ok = True
    print(f"results in {out_dir}", flush=True)
    with serve_process(
        server_env, out_dir / "server.log", ready_timeout_s=READY_TIMEOUT_S
    ) as running:
        server, base_url = running.process, running.url
        print(
            f"server ready on {base_url} (pid {server.pid}, RSS {rss_mib(server.pid):.0f} MiB)",
            flush=True,
        )
        if args.soak and args.prime:
            started = time.monotonic()
            batch_size = int(server_env.get("SIMSCORE_MAX_BATCH_SIZE", "8"))
            sent = prime(base_url, args.scale, batch_size)
            print(
                f"primed: {sent} requests in {time.monotonic() - started:.0f} s, "
                f"RSS {rss_mib(server.pid):.0f} MiB",
                flush=True,
            )
        for users in users_list:
            spawn = args.spawn_rate or max(1.0, users / 5)
            csv_path = out_dir / f"rss_u{users}.csv"
            sampler = RssSampler(server.pid, base_url, args.rss_interval_s, csv_path)
            sampler.start()
            try:
                result = run_locust(base_url, server, users, spawn, duration_s, out_dir, locust_env)
            finally:
                sampler.halt.set()
                sampler.join()
            results.append(result)
            print(table([result]).splitlines()[-1], flush=True)
            ok &= result.server_5xx == 0 and result.failures == 0
            if args.soak:
                soak = rss_growth(sampler.samples, args.warmup_s, args.rss_window_s)
                ok &= soak["growth"] < args.max_rss_growth
            wait_idle(base_url)
    meta["results"] = [asdict(r) for r in results]
    meta["soak_rss"] = soak
    meta["passed"] = ok
    (out_dir / "summary.json").write_text(json.dumps(meta, indent=2))
    print()
    print(table(results))
    for r in results:
        for message, count in r.failure_messages.items():
            print(f"  u={r.users}: {count} x {message}")
    if results and not args.soak:
        best = max(results, key=lambda r: r.pairs_per_s)
        print(
            f"\npeak {best.pairs_per_s:g} pairs/s at {best.users} users; a soak at 80 % of it: "
            f"--soak --users {best.users} --pairs-per-s {0.8 * best.pairs_per_s:.3g}"
        )
    if soak:
        print(
            f"\nsoak RSS after {args.warmup_s:g} s warm-up: {soak['base_mib']} -> {soak['end_mib']}"
            f" MiB ({soak['growth']:+.2%}; max {soak['max_mib']} MiB, {soak['max_growth']:+.2%});"
            f" limit {args.max_rss_growth:.0%}"
        )
    print(f"\n{'PASS' if ok else 'FAIL'}; {meta['machine']}; reports in {out_dir}")
    return 0 if ok else 1


def machine() -> str:
    """``nproc`` and the CPU model name, for every recorded figure."""
    model = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{os.cpu_count()} cores, {model}"


if __name__ == "__main__":
    sys.exit(main())
