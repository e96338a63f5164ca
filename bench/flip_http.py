"""flip over HTTP against NVIDIA's flip-evaluator on the same pairs; not a test. Prints Markdown
with the machine (recorded in docs/benchmarks.md).

    .venv/bin/python bench/flip_http.py            # 512 px, 16 clients, 3 rounds of 20 s
    .venv/bin/python bench/flip_http.py --quick    # 128 px, 4 clients, 1 round of 5 s

One ``simscore serve`` process (``SIMSCORE_WEIGHTS=random``; flip runs no network; batches of up
to ``--clients`` pairs) is driven by ``--clients`` closed-loop clients posting distinct
``--side`` px pairs with ``scores=flip`` (``bench.http_load``: each body its own photograph crop
and a noisy copy, as PNG). ``flip_evaluator.evaluate(ref, test, "LDR")`` (C++, OpenMP on every
core) scores the same decoded pairs one after the other in this process, as its API takes
them. The two alternate round by round (each has the machine's cores while it runs); medians.
The last column is the largest absolute difference of the service's flip from the tool's on
these pairs (the issue's bound: 1e-4).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import Results, header, load_average, table
from bench.http_load import Body, run_load, service_env, square_bodies
from devtools.images import photo_pair
from devtools.servers import serve_process


def decoded_pairs(side: int, count: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """The pixels the server decodes from ``square_bodies(side, count)``, as the tool takes
    them: ``(H, W, 3)`` float32 sRGB in [0, 1]."""
    pairs = []
    for seed in range(count):
        x, y = photo_pair(side, seed=seed)
        as_array = [
            t.mul(255).round().div(255).permute(1, 2, 0).contiguous().numpy() for t in (x, y)
        ]
        pairs.append((as_array[0], as_array[1]))
    return pairs


def tool_means(pairs: list[tuple[np.ndarray, np.ndarray]]) -> list[float]:
    import flip_evaluator

    return [float(flip_evaluator.evaluate(x, y, "LDR", applyMagma=False)[1]) for x, y in pairs]


def service_means(url: str, bodies: list[Body]) -> list[float]:
    with httpx.Client(base_url=url, timeout=600) as client:
        answers = [client.post("/compare", files=b.files, data=b.data) for b in bodies]
    return [float(a.raise_for_status().json()["scores"]["flip"]) for a in answers]


def run(args: argparse.Namespace, out: Path) -> tuple[list[list[str]], dict[str, Any]]:
    count: int = args.clients
    pairs = decoded_pairs(args.side, count)
    bodies = square_bodies(args.side, count, "flip")
    tool_means(pairs[:1])  # untimed first call
    rates: dict[str, list[float]] = {"service over HTTP": [], "flip-evaluator, in a loop": []}
    env = service_env(max_batch_size=count, warmup_sides=args.side, max_wait_ms=args.wait_ms)
    with serve_process(env, out / "server.log", ready_timeout_s=900) as server:
        for k in range(args.rounds):
            order = list(rates) if k % 2 == 0 else list(reversed(rates))
            for name in order:
                if name == "service over HTTP":
                    load = run_load(server.url, bodies, clients=count, seconds=args.seconds)
                    rate = load.pairs_per_s
                else:
                    started = time.perf_counter()
                    tool_means(pairs)
                    rate = count / (time.perf_counter() - started)
                rates[name].append(rate)
                print(f"round {k}: {name}: {rate:.2f} pairs/s", file=sys.stderr)
        ours = service_means(server.url, bodies)
    theirs = tool_means(pairs)
    worst = max(abs(a - b) for a, b in zip(ours, theirs, strict=True))
    median = {name: statistics.median(values) for name, values in rates.items()}
    tool = median["flip-evaluator, in a loop"]
    rows = [
        [name, f"{value:.2f}", f"{value / tool:.2f}x", f"{worst:.1e}" if "service" in name else ""]
        for name, value in median.items()
    ]
    return rows, {"rates": rates, "median": median, "max_abs_difference": worst}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--side", type=int, default=512)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--wait-ms", type=float, default=20.0)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--out", type=Path, default=Path("results/flip_http"))
    args = parser.parse_args()
    if args.quick:
        args.side, args.clients, args.seconds, args.rounds = 128, 4, 5.0, 1
    args.out.mkdir(parents=True, exist_ok=True)
    print(header(f"flip over HTTP: {args.clients} clients, distinct {args.side} px pairs"))
    results = Results(args.out, "flip_http", {"argv": sys.argv})
    rows, data = run(args, args.out)
    results.add("flip", data)
    print(table(["contender", "pairs/s", "vs flip-evaluator", "max abs. diff"], rows))
    print(
        f"\nMedian of {args.rounds} interleaved rounds of {args.seconds:g} s (HTTP) or "
        f"{args.clients} pairs (the tool). Load average at the end: {load_average()}."
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
