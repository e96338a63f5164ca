"""What tracing costs: pairs/s with every request traced and exported, against tracing off,
side by side in one run.

Two real ``simscore serve`` processes with the same settings (CPU, seeded weights, warmed up at
the benchmark's size, reference cache off) run at once; only one is loaded at a time. One has no
OTEL variable (tracing off); the other exports every span (``OTEL_TRACES_SAMPLER=always_on``)
over OTLP/HTTP to a real receiver in this process (``devtools/otlp.py``, decoding every
export like a collector), on the same machine: its CPU is charged to the traced side. Rounds
alternate which server goes first; the figures are each side's median pairs/s over the rounds,
and the server process's CPU time per answered pair (all its threads: the exporter's included),
which contention from other work on a shared machine disturbs far less than pairs/s.
Not a test. Run:

    python bench/tracing.py [--side 224] [--clients 8] [--seconds 30] [--rounds 8]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import header, table
from bench.http_load import Body, LoadResult, run_load, square_bodies
from bench.server_probe import Probe
from devtools.http import metric_value
from devtools.otlp import OtlpReceiver, otel_env
from devtools.servers import ServerProcess, serve_process
from devtools.settings import write_seeded_weights

TARGET = 0.97  # pairs/s traced / pairs/s untraced (the bar)


def server_env(weights: Path, side: int) -> dict[str, str]:
    return {
        "SIMSCORE_WEIGHTS": str(weights),
        "SIMSCORE_DEVICE": "cpu",
        "SIMSCORE_WARMUP_SIDES": str(side),
        "SIMSCORE_REFERENCE_CACHE_SIZE": "0",
        "SIMSCORE_QUEUE_SIZE": "1024",
        "SIMSCORE_REQUEST_TIMEOUT_S": "600",
        "SIMSCORE_DRAIN_TIMEOUT_S": "600",
        "SIMSCORE_LOG_LEVEL": "warning",
    }


def dropped_spans(server: ServerProcess) -> float:
    text = httpx.get(f"{server.url}/metrics", timeout=30).text
    return sum(
        metric_value(text, f'simscore_trace_spans_dropped_total{{reason="{reason}"}}')
        for reason in ("queue_full", "export_failed")
    )


@dataclass
class Run:
    """Each side's rounds, and what the traced side sent."""

    results: dict[str, list[LoadResult]] = field(default_factory=lambda: {"off": [], "on": []})
    # the server process's CPU milliseconds per answered pair (all its threads), per round
    cpu_ms: dict[str, list[float]] = field(default_factory=lambda: {"off": [], "on": []})
    traced_requests: int = 0  # warm-up included
    spans: int = 0
    dropped: float = 0.0


def measure(args: argparse.Namespace, bodies: list[Body]) -> Run:
    """Both servers up at once, loaded one at a time, in alternating order (module docstring)."""
    run = Run()
    with contextlib.ExitStack() as stack:
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory()))
        receiver = stack.enter_context(OtlpReceiver())
        env = server_env(write_seeded_weights(tmp / "vgg19.pth"), args.side)
        traced = {**env, **otel_env(receiver, OTEL_TRACES_SAMPLER="always_on")}
        traced["OTEL_BSP_SCHEDULE_DELAY"] = "5000"  # the SDK's default
        servers = {
            "off": stack.enter_context(serve_process(env, tmp / "off.log")),
            "on": stack.enter_context(serve_process(traced, tmp / "on.log")),
        }
        for name, server in servers.items():  # one untimed round each: first-batch costs
            warm = run_load(server.url, bodies, clients=args.clients, seconds=min(args.seconds, 10))
            run.traced_requests += len(warm.latencies_s) if name == "on" else 0
            print(f"warmed up: tracing {name}", file=sys.stderr)
        for k in range(args.rounds):
            for name in ["off", "on"] if k % 2 == 0 else ["on", "off"]:
                probe = Probe(servers[name].process.pid)
                cpu_before = probe.cpu_seconds()
                result = run_load(
                    servers[name].url, bodies, clients=args.clients, seconds=args.seconds
                )
                cpu_s = probe.cpu_seconds() - cpu_before
                run.results[name].append(result)
                run.cpu_ms[name].append(1000 * cpu_s / max(len(result.done_at), 1))
                run.traced_requests += len(result.latencies_s) if name == "on" else 0
                print(f"round {k + 1} tracing {name}: {result.pairs_per_s:.3f}", file=sys.stderr)
        run.dropped = dropped_spans(servers["on"])
        servers["on"].stop()  # drains and exports its last spans
        run.spans = len(receiver.spans)
    return run


def report(args: argparse.Namespace, run: Run) -> None:
    print(
        f"{args.clients} closed-loop clients, {args.seconds:g} s of {args.side} px pairs per "
        f"round and side, {args.rounds} rounds alternating which side goes first; reference "
        "cache off. Traced: every request sampled, spans exported over OTLP/HTTP to a receiver "
        "on the same machine.\n"
    )
    off, on = run.results["off"], run.results["on"]
    cpu_off, cpu_on = run.cpu_ms["off"], run.cpu_ms["on"]
    rows = [
        [
            str(k + 1),
            f"{off[k].pairs_per_s:.3f}",
            f"{on[k].pairs_per_s:.3f}",
            f"{on[k].pairs_per_s / off[k].pairs_per_s:.3f}",
            f"{cpu_off[k]:.0f}",
            f"{cpu_on[k]:.0f}",
            f"{cpu_off[k] / cpu_on[k]:.3f}",
        ]
        for k in range(len(off))
    ]
    paired = statistics.median(float(row[3]) for row in rows)
    off_median = statistics.median(r.pairs_per_s for r in off)
    on_median = statistics.median(r.pairs_per_s for r in on)
    ratio = on_median / off_median
    cpu_ratio = statistics.median(cpu_off) / statistics.median(cpu_on)
    rows.append(
        [
            "median",
            f"{off_median:.3f}",
            f"{on_median:.3f}",
            f"{ratio:.3f}",
            f"{statistics.median(cpu_off):.0f}",
            f"{statistics.median(cpu_on):.0f}",
            f"{cpu_ratio:.3f}",
        ]
    )
    headers = ["round", "off pairs/s", "on pairs/s", "on / off"]
    print(table([*headers, "off CPU ms/pair", "on CPU ms/pair", "off / on CPU"], rows))
    p50 = [statistics.median(r.percentile_ms(0.5) for r in side) for side in (off, on)]
    per_request = run.spans / max(run.traced_requests, 1)
    print(
        f"\np50 latency (median over rounds): off {p50[0]:.0f} ms, on {p50[1]:.0f} ms. "
        f"Spans received: {run.spans} for {run.traced_requests} traced requests "
        f"({per_request:.1f} per request, batches included); dropped: {run.dropped:g}.\n"
        f"Median of the rounds' own ratios: {paired:.3f}. CPU per pair (the server process, all "
        f"its threads; the throughput ratio a CPU-bound server would show unshared): "
        f"{cpu_ratio:.3f}.\nTarget: on / off >= {TARGET}: "
        f"{'met' if ratio >= TARGET else 'NOT met'} ({ratio:.3f}, medians' ratio)."
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--side", type=int, default=224)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--rounds", type=int, default=8)
    args = parser.parse_args(argv)
    for name in [n for n in os.environ if n.startswith("OTEL_")]:
        del os.environ[name]  # the untraced server must see none
    print(header("simscore tracing: traced vs untraced throughput"))
    report(args, measure(args, square_bodies(args.side, 4 * args.clients)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
