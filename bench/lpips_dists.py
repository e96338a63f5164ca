"""LPIPS and DISTS as pure functions: simscore's networks and heads on batches of pairs against the
reference packages (``lpips`` 0.1.4, ``DISTS_pytorch`` 0.1) called one pair at a time (how their
users call them) and in batches of the same size. CPU, fp32. The HTTP side comes with the service.

Prints a Markdown table with the machine. Not a test. Run:

    .venv/bin/python bench/lpips_dists.py                  # 256 px, 16 distinct pairs, 3 rounds
    .venv/bin/python bench/lpips_dists.py --quick          # 64 px, 4 pairs, 1 round
    .venv/bin/python bench/lpips_dists.py --scores lpips   # a subset (lpips, lpips_vgg, dists)

Every batch is ``--pairs`` distinct pairs (each reference its own photograph crop, no cache), the
same tensors for every contender; both sides carry the same seeded random backbone (ImageNet
weights cannot be downloaded here; timing does not depend on the weights' values). simscore runs
both images of every pair in one forward pass (the service concatenates them), in NCHW and in
channels-last (the service's default on CPUs), under ``inference_mode``; the packages run under
``no_grad``. Contenders alternate round by round (``bench.common.interleaved``), one untimed call
each first. The last column checks that the contenders agree on the scores (DISTS: the package's
own float32 rounding is about 1e-7 absolute; see app/scores/dists.py).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from app.models import registry
from app.models.alexnet import ALEXNET_CHANNELS
from app.models.dists import DISTS_CHANNELS
from app.models.vgg16 import VGG16_CHANNELS
from app.models.weights import load_dists_head, load_lpips_head
from app.scores import dists, lpips
from bench.common import distinct_pairs, header, interleaved, load_average, table
from devtools.packages import load_networks, reference_dists, reference_lpips, seeded_backbone

SCORES = ("lpips", "lpips_vgg", "dists")
Scorer = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def ours(score: str, directory: Path) -> Scorer:
    """simscore's network and metric: both images of every pair in one forward pass."""
    spec, network_spec, entry = registry.network_of(score)
    path, _ = seeded_backbone(directory, spec)
    network = load_networks(path, spec)[network_spec.name]
    if entry.head is None:
        raise ValueError(f"{score} has no head")
    if score == "dists":
        alpha, beta = load_dists_head(entry.head, DISTS_CHANNELS)

        def metric(fx: list[torch.Tensor], fy: list[torch.Tensor]) -> torch.Tensor:
            return dists(fx, fy, alpha=alpha, beta=beta)

    else:
        heads = load_lpips_head(
            entry.head, ALEXNET_CHANNELS if score == "lpips" else VGG16_CHANNELS
        )

        def metric(fx: list[torch.Tensor], fy: list[torch.Tensor]) -> torch.Tensor:
            return lpips(fx, fy, heads=heads)[0]

    def run(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        with torch.inference_mode():
            taps = network(torch.cat([x, y]))
            n = x.shape[0]
            return metric([t[:n] for t in taps], [t[n:] for t in taps])

    return run


def package(score: str, directory: Path) -> Scorer:
    spec, _, _ = registry.network_of(score)
    _, state = seeded_backbone(directory, spec)
    if score == "dists":
        model = reference_dists(state)

        def run_dists(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
            with torch.no_grad():
                scores: torch.Tensor = model(x, y).reshape(-1)
            return scores

        return run_dists
    model = reference_lpips("alex" if score == "lpips" else "vgg", state)

    def run_lpips(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            scores: torch.Tensor = model(x, y, normalize=True).reshape(-1)
        return scores

    return run_lpips


def one_at_a_time(scorer: Scorer) -> Scorer:
    return lambda x, y: torch.cat([scorer(x[i : i + 1], y[i : i + 1]) for i in range(len(x))])


def measure(score: str, x: torch.Tensor, y: torch.Tensor, rounds: int) -> list[list[str]]:
    with tempfile.TemporaryDirectory() as directory:
        mine, theirs = ours(score, Path(directory)), package(score, Path(directory))
    x_last = x.contiguous(memory_format=torch.channels_last)
    y_last = y.contiguous(memory_format=torch.channels_last)
    contenders: dict[str, Callable[[], torch.Tensor]] = {
        "simscore, NCHW": lambda: mine(x, y),
        "simscore, channels-last": lambda: mine(x_last, y_last),
        "package, one pair at a time": lambda: one_at_a_time(theirs)(x, y),
        "package, whole batch": lambda: theirs(x, y),
    }
    values = {name: run() for name, run in contenders.items()}
    seconds = interleaved(dict(contenders), rounds=rounds)
    single = seconds["package, one pair at a time"]
    batched = seconds["package, whole batch"]
    reference = values["package, one pair at a time"]
    rows = []
    for name, s in seconds.items():
        difference = (values[name] - reference).abs()
        relative = float((difference / reference.abs()).max())
        rows.append(
            [
                score,
                name,
                f"{s * 1000:.0f}",
                f"{len(x) / s:.2f}",
                f"{single / s:.2f}x",
                f"{batched / s:.2f}x",
                f"{float(difference.max()):.1e} ({relative:.1e})",
            ]
        )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--side", type=int, default=256)
    parser.add_argument("--pairs", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--scores", default=",".join(SCORES))
    args = parser.parse_args()
    side, count, rounds = (64, 4, 1) if args.quick else (args.side, args.pairs, args.rounds)
    scores = [s.strip() for s in args.scores.split(",") if s.strip()]
    unknown = set(scores) - set(SCORES)
    if unknown:
        parser.error(f"unknown score(s) {', '.join(sorted(unknown))}; choose from {SCORES}")
    pairs = distinct_pairs(side, count)
    x = torch.stack([p.reference for p in pairs])
    y = torch.stack([p.candidate for p in pairs])
    print(header(f"LPIPS and DISTS, pure functions: {count} distinct {side} px pairs, CPU fp32"))
    rows = [row for score in scores for row in measure(score, x, y, rounds)]
    print(
        table(
            [
                "score",
                "contender",
                f"ms per {count} pairs",
                "pairs/s",
                "vs one at a time",
                "vs package batch",
                "max abs. (rel.) diff",
            ],
            rows,
            text_columns=2,
        )
    )
    print(
        f"\nMedian of {rounds} interleaved rounds; the differences are to the package's scores "
        f"one pair at a time. Load average at the end: {load_average()}."
    )


if __name__ == "__main__":
    main()
