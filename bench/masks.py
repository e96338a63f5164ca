"""What a region of interest costs: masked vs unmasked pairs through ``Scorer.score``.

Prints a Markdown table (recorded in docs/benchmarks.md). Not a test. Run:

    .venv/bin/python bench/masks.py               # 224 and 512 px, batch 8, 5 rounds
    .venv/bin/python bench/masks.py --quick       # 64 px, batch 2, 2 rounds

Distinct pairs (every reference its own, no cache), the same pairs with and without a mask
(everything but a corner), run interleaved round by round so machine noise hits both alike.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from app.models.vgg import VGGFeatures
from app.models.weights import load_features
from app.scores import composite
from app.scoring import ModelRunner, PairRequest, Scorer
from app.scoring.device import tune_cpu_allocator
from bench.common import machine
from devtools.images import photo_pair


def pairs(side: int, n: int, masked: bool) -> list[PairRequest]:
    out = []
    for seed in range(n):
        reference, candidate = photo_pair(side, seed)
        if not masked:
            out.append(PairRequest(reference, candidate))
            continue
        mask = torch.ones(1, side, side, dtype=torch.bool)
        mask[:, : side // 4, : side // 3] = False
        out.append(PairRequest(reference, composite(reference, candidate, mask), mask=mask))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    sides, batch, rounds = ([64], 2, 2) if args.quick else ([224, 512], 8, args.rounds)
    tune_cpu_allocator()
    features, _ = load_features("random")
    scorer = Scorer(ModelRunner(VGGFeatures(features), device=torch.device("cpu")))
    print(f"Machine: {machine()}")
    date = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    print(f"Date: {date}, load average {os.getloadavg()[0]:.1f}\n")
    print("| px | batch | unmasked ms/batch | masked ms/batch | masked / unmasked |")
    print("|---:|---:|---:|---:|---:|")
    for side in sides:
        plain, masked = pairs(side, batch, False), pairs(side, batch, True)
        scorer.score(plain)
        scorer.score(masked)
        times: dict[bool, list[float]] = {False: [], True: []}
        for _ in range(rounds):
            for is_masked, batch_pairs in ((False, plain), (True, masked)):
                started = time.perf_counter()
                scorer.score(batch_pairs)
                times[is_masked].append(time.perf_counter() - started)
        a, b = statistics.median(times[False]), statistics.median(times[True])
        print(f"| {side} | {batch} | {a * 1000:.0f} | {b * 1000:.0f} | {b / a:.3f} |")


if __name__ == "__main__":
    main()
