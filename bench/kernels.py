"""How far one pair's scores move between CPU kernel choices on this machine; not a test.

    python bench/kernels.py                 # a few minutes; a Markdown table on stdout

Eight 224 px photograph pairs are scored (random weights, CPU, no reference cache) in a fresh
process with this CPU's default kernels, then in one per other choice: ATen without SIMD, oneDNN
capped at SSE4.1, both, one torch thread, and NCHW instead of channels-last. Each row is the
largest relative change of each score over the eight pairs against this CPU's default kernels
(pairs scored alone); the first row compares the pairs scored as one batch of 8 with the same
pairs alone, default kernels.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from app.config import Settings
from bench.common import machine, table

SCORES = ("vgg", "style", "ssim", "mse", "psnr")
KERNELS: dict[str, dict[str, str]] = {
    "ATen kernels without SIMD": {"ATEN_CPU_CAPABILITY": "default"},
    "oneDNN capped at SSE4.1": {"ONEDNN_MAX_CPU_ISA": "SSE41"},
    "both of the above": {"ATEN_CPU_CAPABILITY": "default", "ONEDNN_MAX_CPU_ISA": "SSE41"},
    "1 torch thread": {"SIMSCORE_TORCH_THREADS": "1"},
    "contiguous NCHW (channels-last off)": {"SIMSCORE_CHANNELS_LAST": "false"},
}


def score_pairs() -> None:
    """(Child process) Scores of 8 photograph pairs at 224 px, alone and as one batch, JSON."""
    from app.scoring import PairRequest, build_scorer
    from devtools.images import photo_pair

    settings = Settings(
        _env_file=None, weights="random", device="cpu", warmup_sides=[], reference_cache_size=0
    )
    scorer, _ = build_scorer(settings)
    pairs = [PairRequest(*photo_pair(224, seed)) for seed in range(8)]
    alone = [scorer.score([pair])[0] for pair in pairs]
    together = scorer.score(pairs)
    out = {
        "alone": [[getattr(s, n) for n in SCORES] for s in alone],
        "batch": [[getattr(s, n) for n in SCORES] for s in together],
    }
    print(json.dumps(out))


def cpu_kernels() -> None:
    """The largest relative change of each score between kernel choices on this CPU."""

    def run(env: dict[str, str]) -> dict[str, list[list[float]]]:
        out = subprocess.run(
            [sys.executable, __file__, "--score-pairs"],
            env={**os.environ, **env},
            capture_output=True,
            text=True,
            check=True,
            timeout=600,
        ).stdout
        found: dict[str, list[list[float]]] = json.loads(out.strip().splitlines()[-1])
        return found

    def moved(a: list[list[float]], b: list[list[float]]) -> list[str]:
        cells = []
        for i in range(len(SCORES)):
            worst = max(abs(x[i] - y[i]) / abs(y[i]) for x, y in zip(a, b, strict=True))
            cells.append(f"{worst:.1e}")
        return cells

    base = run({})
    rows = [["batch of 8 vs alone (default kernels)", *moved(base["batch"], base["alone"])]]
    for name, env in KERNELS.items():
        other = run(env)
        rows.append([name, *moved(other["alone"], base["alone"])])
    print(
        f"score movement, {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC, "
        f"{machine()}\n"
    )
    print(table(["kernels (vs this CPU's defaults, pairs alone)", *SCORES], rows))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--score-pairs", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.score_pairs:
        score_pairs()
        return
    cpu_kernels()


if __name__ == "__main__":
    main()
