"""Activation memory, measured; not a test.

    python bench/activations.py                # both parts, about 10 minutes on 2 CPU cores
    python bench/activations.py --per-pixel    # only the per-pixel table
    python bench/activations.py --server       # only the server run

1. **Peak memory per pixel** of one batch on this CPU, for each precision it runs natively: a
   fresh process builds the scorer (random weights, the allocator tuned as ``simscore serve``
   does), scores a small pair, hands free heap back (``malloc_trim``), then scores a batch of
   distinct 512 px pairs (or runs the forward pass alone); the peak resident memory it added
   (``VmHWM`` after ``clear_refs``) over the pixels the forward pass took (rows x height x
   width). The budget's default (``app/scoring/activations.py``) comes from this table.
2. **The server under a large batch**: ``simscore serve`` with every memory setting at its
   default (CPU, random weights, warmed up at 224 px; the request and drain timeouts raised so
   that the whole batch is scored on a slow CPU) gets a ``/compare/batch`` of a 1024x1024
   reference and 16 distinct 1024x1024 candidates; a small ``/compare`` is sent while it runs.
   The server's peak RSS over its RSS before, the forward passes it made (from ``/metrics``),
   and both answers and times. The issue measured 4.4 -> 11 GiB for 64 candidates before the
   budget; the target is at most 3 GiB for 16.
"""

from __future__ import annotations

import argparse
import ctypes
import datetime
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import machine, table
from bench.server_probe import Probe, control_pair, post
from devtools import attacks
from devtools.attacks import KEY
from devtools.images import encode
from devtools.servers import serve_process

SIDE = 512
ROWS = (2, 4)
BATCH_SIDE, CANDIDATES = 1024, 16
TARGET_GIB = 3.0


# -- 1. per pixel -------------------------------------------------------------------------------


def measure_one(precision: str, rows: int, mode: str) -> None:
    """(Child process) The peak one batch adds, as JSON."""
    from app import allocator

    allocator.tune()
    import torch

    from app.config import Settings
    from app.scoring import build_scorer
    from app.scoring.types import PairRequest

    settings = Settings(
        _env_file=None,
        weights="random",
        device="cpu",
        precision=precision,
        compile="off",
        reference_cache_size=0,
    )
    scorer, _ = build_scorer(settings)
    generator = torch.Generator().manual_seed(0)
    pairs = [
        PairRequest(
            torch.rand(3, SIDE, SIDE, generator=generator),
            torch.rand(3, SIDE, SIDE, generator=generator),
        )
        for _ in range(rows // 2)
    ]
    images = torch.rand(rows, 3, SIDE, SIDE, generator=generator)
    scorer.score([PairRequest(torch.rand(3, 64, 64), torch.rand(3, 64, 64))])
    ctypes.CDLL(None).malloc_trim(0)
    probe = Probe(os.getpid())
    started = time.perf_counter()
    with probe.watch():
        if mode == "forward":
            scorer.runner.forward(images)
        else:
            scorer.score(pairs)
    seconds = time.perf_counter() - started
    print(json.dumps({"peak_mib": probe.peak_mib, "seconds": seconds}))


def per_pixel() -> list[list[str]]:
    from app.scoring.device import cpu_flags, native_bf16

    precisions = ["fp32"] + (["bf16"] if native_bf16(cpu_flags()) else [])
    rows_out = []
    for precision in precisions:
        for mode in ("forward", "batch"):
            for rows in ROWS:
                out = subprocess.run(
                    [sys.executable, __file__, "--measure", precision, str(rows), mode],
                    capture_output=True,
                    text=True,
                    check=True,
                    timeout=1200,
                ).stdout
                found = json.loads(out.strip().splitlines()[-1])
                pixels = rows * SIDE * SIDE
                rows_out.append(
                    [
                        precision,
                        "forward pass alone" if mode == "forward" else "batch (forward + metrics)",
                        f"{rows} x {SIDE}x{SIDE}",
                        f"{found['peak_mib']:,.0f}",
                        f"{found['peak_mib'] * 2**20 / pixels:,.0f}",
                        f"{found['seconds']:.1f} s",
                    ]
                )
                print(" | ".join(rows_out[-1]), file=sys.stderr, flush=True)
    return rows_out


# -- 2. the server --------------------------------------------------------------------------


def distinct_candidates(count: int) -> tuple[bytes, list[bytes]]:
    """A 1024 px PNG reference and ``count`` distinct 1024 px PNG candidates (noise seeds)."""
    base = np.asarray(
        attacks.large_photo(BATCH_SIDE, BATCH_SIDE), dtype=np.float32
    )  # smooth: small PNGs
    reference = encode(base.astype(np.uint8))
    candidates = []
    for seed in range(count):
        noise = np.random.default_rng(seed).normal(0, 2, base.shape).astype(np.float32)
        candidates.append(encode(np.clip(base + noise, 0, 255).astype(np.uint8)))
    return reference, candidates


def batches_so_far(url: str) -> tuple[float, float]:
    """(forward passes, pairs) from ``simscore_batch_size``'s count and sum."""
    text = httpx.get(url + "/metrics", headers=attacks.bearer(), timeout=10).text
    values = {}
    for name in ("simscore_batch_size_count", "simscore_batch_size_sum"):
        line = next(line for line in text.splitlines() if line.startswith(name + " "))
        values[name] = float(line.split()[1])
    return values["simscore_batch_size_count"], values["simscore_batch_size_sum"]


def server_run() -> tuple[list[list[str]], str]:
    env = {
        "SIMSCORE_WEIGHTS": "random",
        "SIMSCORE_DEVICE": "cpu",
        "SIMSCORE_WARMUP_SIDES": "224",
        "SIMSCORE_API_KEYS": KEY,
        "SIMSCORE_REQUEST_TIMEOUT_S": "1800",
        "SIMSCORE_DRAIN_TIMEOUT_S": "1800",
    }
    reference, candidates = distinct_candidates(CANDIDATES)
    parts = attacks.batch_parts(reference, candidates, metrics="vgg,style,ssim,mse,psnr")
    small = attacks.pair_parts(*control_pair())
    log = Path(tempfile.mkdtemp(prefix="simscore-activations-")) / "server.log"
    rows: list[list[str]] = []
    with serve_process(env, log) as server:
        post(server.url, "/compare", small)  # warm, as bench/attacks.py's server is
        probe = Probe(server.process.pid)
        idle_mib = probe.rss_mib()
        passes_before, pairs_before = batches_so_far(server.url)
        small_answer: list[tuple[str, float]] = []

        def send_small() -> None:
            time.sleep(5)  # the batch is being decoded or scored by then
            started = time.perf_counter()
            response = post(server.url, "/compare", small)
            timing = response.json().get("timing_ms", {}) if response.status_code == 200 else {}
            where = ", ".join(
                f"{name.removesuffix('_ms')} {timing[name] / 1000:.1f} s"
                for name in ("decode_ms", "queue_ms", "compute_ms")
                if name in timing
            )
            small_answer.append(
                (f"{response.status_code} ({where})", time.perf_counter() - started)
            )

        thread = threading.Thread(target=send_small)
        with probe.watch():
            thread.start()
            started = time.perf_counter()
            response = httpx.post(
                server.url + "/compare/batch",
                content=attacks.form_body(parts),
                headers={"Content-Type": attacks.CONTENT_TYPE, **attacks.bearer()},
                timeout=3600,
            )
            batch_s = time.perf_counter() - started
            thread.join()
        passes, pairs = batches_so_far(server.url)
        results = response.json().get("results", []) if response.status_code == 200 else []
        statuses = [r.get("error", {}).get("status", 200) for r in results]
        small_status, small_s = small_answer[0]
        rows.append(
            [
                f"/compare/batch: 1 + {CANDIDATES} distinct {BATCH_SIDE}x{BATCH_SIDE} PNGs "
                f"({attacks.form_length(parts):,} B)",
                f"{response.status_code}, {statuses.count(200)} of {len(statuses)} scored",
                f"{batch_s:.1f} s",
                f"{passes - passes_before:.0f} batches of {pairs - pairs_before:.0f} pairs",
                f"+{probe.peak_mib:,.0f} (idle {idle_mib:,.0f})",
            ]
        )
        rows.append(
            [
                "/compare of a 224 px pair, sent 5 s into the batch",
                str(small_status),
                f"{small_s:.1f} s",
                "-",
                "-",
            ]
        )
    verdict = (
        f"peak RSS increase {probe.peak_mib / 1024:.2f} GiB "
        f"({'within' if probe.peak_mib / 1024 <= TARGET_GIB else 'OVER'} the {TARGET_GIB:g} GiB "
        "target)"
    )
    return rows, verdict


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--measure", nargs=3, help=argparse.SUPPRESS)
    parser.add_argument("--per-pixel", action="store_true", help="only the per-pixel table")
    parser.add_argument("--server", action="store_true", help="only the server run")
    args = parser.parse_args()
    if args.measure:
        precision, rows, mode = args.measure
        measure_one(precision, int(rows), mode)
        return
    both = not (args.per_pixel or args.server)
    started = datetime.datetime.now(datetime.timezone.utc)
    print(f"simscore activation memory, {started:%Y-%m-%d %H:%M} UTC, {machine()}\n")
    if both or args.per_pixel:
        headers = ("precision", "measured", "rows", "peak MiB", "bytes per pixel", "time")
        print(table(headers, per_pixel(), text_columns=3) + "\n", flush=True)
    if both or args.server:
        rows, verdict = server_run()
        columns = ("request", "answer", "time", "forward passes", "server RSS MiB")
        print(table(columns, rows, text_columns=2))
        print(f"\n{verdict}")


if __name__ == "__main__":
    main()
