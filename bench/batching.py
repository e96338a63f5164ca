"""Batching defaults: pairs/s and latency for max_batch_size and max_wait_ms, through the app.

Closed-loop clients post real photograph pairs to ``POST /compare`` on the in-process ASGI app
(lifespan included, so the real decode pool, batcher and worker thread run); the table shows
throughput and latency percentiles per setting. Not a test. Run:

    .venv/bin/python bench/batching.py [--side 224] [--clients 8] [--pairs 32]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from app.config import Settings
from app.main import create_app
from app.models.weights import random_state_dict, save_state_dict
from bench.common import machine, table


def payloads(side: int, count: int) -> list[dict[str, tuple[str, bytes, str]]]:
    import io

    import numpy as np
    from PIL import Image
    from skimage import data

    out = []
    names = ("astronaut", "chelsea", "coffee", "rocket")
    for i in range(count):
        image = Image.fromarray(getattr(data, names[i % 4])()).resize((side, side))
        noisy = np.clip(
            np.asarray(image, np.float64) + np.random.default_rng(i).normal(0, 8, (side, side, 3)),
            0,
            255,
        )
        ref, cand = io.BytesIO(), io.BytesIO()
        image.save(ref, format="PNG")
        Image.fromarray(noisy.astype("uint8")).save(cand, format="PNG")
        out.append(
            {
                "reference": ("r.png", ref.getvalue(), "image/png"),
                "candidate": ("c.png", cand.getvalue(), "image/png"),
            }
        )
    return out


async def run(
    settings: Settings, work: list[dict[str, tuple[str, bytes, str]]], clients: int
) -> tuple[float, list[float], float]:
    app = create_app(settings)
    latencies: list[float] = []
    batch_sizes: list[int] = []
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(
            transport=transport, base_url="http://b", timeout=600
        ) as client:
            queue: asyncio.Queue[dict[str, tuple[str, bytes, str]]] = asyncio.Queue()
            for item in work:
                queue.put_nowait(item)

            async def worker() -> None:
                while not queue.empty():
                    files = queue.get_nowait()
                    start = time.perf_counter()
                    response = await client.post("/compare", files=files)
                    response.raise_for_status()
                    latencies.append(time.perf_counter() - start)
                    batch_sizes.append(response.json()["timing_ms"]["batch_size"])

            started = time.perf_counter()
            await asyncio.gather(*(worker() for _ in range(clients)))
            elapsed = time.perf_counter() - started
    return len(work) / elapsed, latencies, statistics.mean(batch_sizes)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--side", type=int, default=224)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--pairs", type=int, default=32)
    parser.add_argument("--batch-sizes", type=int, nargs="*", default=[1, 2, 4, 8, 16])
    parser.add_argument("--waits-ms", type=float, nargs="*", default=[0, 2, 10, 50])
    args = parser.parse_args()
    work = payloads(args.side, args.pairs)
    with tempfile.TemporaryDirectory() as tmp:
        weights = Path(tmp) / "w.pth"
        save_state_dict(random_state_dict(0), weights)
        configs = [(b, 2.0) for b in args.batch_sizes] + [(8, w) for w in args.waits_ms if w != 2.0]
        rows = []
        for batch, wait in configs:
            settings = Settings(
                _env_file=None,
                weights=str(weights),
                warmup_sides=[str(args.side)],
                max_batch_size=batch,
                max_wait_ms=wait,
                reference_cache_size=0,
            )
            rate, lat, mean_batch = asyncio.run(run(settings, work, args.clients))
            q = statistics.quantiles(lat, n=100)
            rows.append(
                [
                    str(batch),
                    f"{wait:g}",
                    f"{rate:.2f}",
                    f"{mean_batch:.1f}",
                    f"{q[49] * 1000:.0f}",
                    f"{q[94] * 1000:.0f}",
                    f"{max(lat) * 1000:.0f}",
                ]
            )
            print(" ".join(rows[-1]), file=sys.stderr)
    print(
        f"Machine: {machine()}; {args.clients} closed-loop clients, {args.pairs} pairs of "
        f"{args.side} px per setting, reference cache off\n"
    )
    print(
        table(
            [
                "max_batch_size",
                "max_wait_ms",
                "pairs/s",
                "mean batch",
                "p50 ms",
                "p95 ms",
                "max ms",
            ],
            rows,
        )
    )


if __name__ == "__main__":
    main()
