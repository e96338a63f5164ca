"""Batching defaults: pairs/s and latency for max_batch_size and max_wait_ms, through the app.

Closed-loop clients (``bench/http_load.py``) post real photograph pairs, each its own reference,
to ``POST /compare`` on the in-process ASGI app (lifespan included, so the real decode pool,
batcher and worker thread run), reference cache off; one row per setting. Not a test. Run:

    python bench/batching.py [--side 224] [--clients 8] [--seconds 30]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import header, table
from bench.http_load import Body, LoadResult, drive, square_bodies
from devtools.servers import running
from devtools.settings import settings_for, write_seeded_weights


async def run(
    weights: Path,
    side: int,
    batch: int,
    wait_ms: float,
    bodies: list[Body],
    clients: int,
    seconds: float,
) -> LoadResult:
    settings = settings_for(
        weights,
        warmup_sides=[str(side)],
        max_batch_size=batch,
        max_wait_ms=wait_ms,
        reference_cache_size=0,
        queue_size=1024,
        request_timeout_s=600,
        drain_timeout_s=600,
    )
    async with running(settings) as (_, client):
        return await drive(client, bodies, clients=clients, seconds=seconds)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--side", type=int, default=224)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--batch-sizes", type=int, nargs="*", default=[1, 4, 8, 16])
    parser.add_argument("--waits-ms", type=float, nargs="*", default=[0, 2, 20])
    args = parser.parse_args(argv)
    print(header("simscore batching defaults"))
    bodies: list[Body] = square_bodies(args.side, 2 * max(args.clients, *args.batch_sizes))
    configs = [(b, 20.0) for b in args.batch_sizes] + [(8, w) for w in args.waits_ms if w != 20]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        weights = write_seeded_weights(Path(tmp) / "vgg19.pth")
        for batch, wait in configs:
            result = asyncio.run(
                run(weights, args.side, batch, wait, bodies, args.clients, args.seconds)
            )
            rows.append(
                [
                    str(batch),
                    f"{wait:g}",
                    f"{result.pairs_per_s:.2f}",
                    f"{result.mean_batch:.1f}",
                    f"{result.percentile_ms(0.5):.0f}",
                    f"{result.percentile_ms(0.95):.0f}",
                    f"{max(result.latencies_s) * 1000:.0f}",
                ]
            )
            print(" ".join(rows[-1]), file=sys.stderr)
    print(
        f"{args.clients} closed-loop clients, {args.seconds:g} s of {args.side} px pairs per "
        "setting (each pair its own reference), reference cache off\n"
    )
    headers = ["max_batch_size", "max_wait_ms", "pairs/s", "mean batch", "p50 ms", "p95 ms"]
    print(table([*headers, "max ms"], rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
