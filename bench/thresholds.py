"""What each score does on the test photographs' distortions: the table the CI guide
(docs/ci.md) uses to choose thresholds. Not a test, no timing. Run:

    .venv/bin/python bench/thresholds.py                    # ImageNet VGG19 (torch hub cache)
    .venv/bin/python bench/thresholds.py --weights random   # vgg and style then mean nothing
    .venv/bin/python bench/thresholds.py --weights PATH --side 512

Each of scikit-image's photographs (``devtools.images.PHOTOS``) at ``--side`` px is the
reference; its candidates are the same photograph distorted as renders and uploads are
(``distort``: JPEG, blur, noise, a colour cast) at several strengths, and itself (identical).
Every score of the vocabulary is reported (scores added later appear with no change here):
the median over the photographs, and their range. Direction: see ``LOWER_IS_MORE_ALIKE``.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from app.models.vgg import VGGFeatures
from app.models.weights import load_features
from app.scoring import ModelRunner, PairRequest, Scorer
from app.verdicts import direction
from app.vocabulary import SCORE_NAMES
from bench.common import header, table
from devtools.images import DISTORTIONS, PHOTOS, distort, photo, to_tensor

STRENGTHS = (0.25, 0.5, 1.0, 2.0)
# what strength 1 is (devtools.images.distort)
MEANING = {
    "jpeg": "JPEG at quality 20 / strength (x0.25: 80, x0.5: 40, x1: 20, x2: 10)",
    "blur": "Gaussian blur, radius 2 x strength",
    "noise": "Gaussian noise, sigma 12 x strength (of 255)",
    "colour": "colour cast: RGB gains 1 + (0.1, -0.05, -0.15) x strength, offsets (8, 0, -5)",
}


def cell(values: list[float]) -> str:
    """``median [min, max]`` with 3 significant digits; ``inf`` for infinite values."""

    def show(value: float) -> str:
        return f"{value:.3g}"

    if len(set(values)) == 1:
        return show(values[0])
    return f"{show(statistics.median(values))} [{show(min(values))}, {show(max(values))}]"


def measure(scorer: Scorer, side: int) -> list[tuple[str, dict[str, list[float]]]]:
    """For each distortion and strength (and identical), every score on every photograph."""
    cases = [("identical", "", 0.0)] + [
        (f"{kind} x{strength:g}", kind, strength) for kind in DISTORTIONS for strength in STRENGTHS
    ]
    rows = []
    for label, kind, strength in cases:
        pairs = []
        for seed, name in enumerate(PHOTOS):
            image = photo(name, side)
            candidate = distort(image, kind, seed=seed, strength=strength) if kind else image
            pairs.append(PairRequest(to_tensor(image), to_tensor(candidate)))
        scored = scorer.score(pairs)
        values: dict[str, list[float]] = {
            name: [float(getattr(s, name)) for s in scored if getattr(s, name) is not None]
            for name in SCORE_NAMES
        }
        rows.append((label, values))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--weights", default="imagenet", help="imagenet, random or a file")
    parser.add_argument("--side", type=int, default=256, help="photographs at side x side px")
    args = parser.parse_args()
    features, info = load_features(args.weights)
    scorer = Scorer(ModelRunner(VGGFeatures(features), device=torch.device("cpu")))
    print(header("What each score did on the test photographs' distortions"))
    print(
        f"Weights: {info.source} (sha256 {info.sha256[:12]}); photographs: "
        f"{', '.join(PHOTOS)} at {args.side}x{args.side} px; median [min, max] over them."
    )
    if info.source == "random":
        print("\n**Random weights: the vgg and style columns mean nothing here.**")
    print()
    headers = ["candidate", *(f"{n} ({direction(n)} = alike)" for n in SCORE_NAMES)]
    rows = [
        [label, *(cell(values[name]) if values[name] else "-" for name in SCORE_NAMES)]
        for label, values in measure(scorer, args.side)
    ]
    print(table(headers, rows))
    print()
    for kind in DISTORTIONS:
        print(f"- {kind}: {MEANING[kind]}")


if __name__ == "__main__":
    main()
