"""bf16 (and fp16 on CUDA) against fp32: how far every score moves, and whether pairs keep their
order. Real photographs under several distortions and strengths. Prints Markdown (recorded in
docs/benchmarks.md). Not a test; tests/scoring/test_precision.py bounds a small set.

    python bench/precision.py                      # 224 px, 6 photos x 4 distortions x 4 strengths
    python bench/precision.py --compiled           # bf16 through compiled kernels, as served
    python bench/precision.py --device cuda --precisions bf16,fp16
    python bench/precision.py --quick              # 48 px, a few pairs

Per score: the median and largest relative deviation ``|s_low - s_fp32| / |s_fp32|`` over the
pairs, and Spearman's rank correlation between the two precisions' scores (1: the same order).
An identical pair is scored too: it must stay exactly 0 (vgg, style) in every precision.
lpips, lpips_vgg and dists are measured too (their networks under autocast, their heads and
statistics in fp32, as served), on seeded random AlexNet and VGG16 backbones (``--no-networks``
leaves them out).

On a CPU without AMX or AVX512-BF16 bf16 runs emulated: slow, but the numbers are what native
units compute (bf16 inputs and weights, fp32 accumulation), so the deviations measured here hold;
only the timing does not. ``--gram`` adds the deviation of style if the Gram matrices were also
computed in bf16 (inputs rounded to bf16, products accumulated in fp32, the result rounded to
bf16 as a bf16 matmul returns it) from the same bf16 taps, against today's fp32 Gram. Every
pair's scores in both precisions go to ``--out/precision.json``.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Sequence
from functools import partial
from pathlib import Path
from typing import Any, cast

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from torch import nn

from app.models import registry
from app.models.vgg import VGGFeatures
from app.models.weights import Loaded, load_backbone, load_features
from app.scores import gram_matrix, style_distance
from app.scoring import ModelRunner, PairRequest, PairScores, Scorer
from app.vocabulary import ALL_SCORES, DEFAULT_SCORES, Precision, ScoreName
from bench.common import Results, header, load_average, table
from devtools.images import distort, photo, to_tensor

PHOTOS = ("astronaut", "chelsea", "coffee", "rocket", "immunohistochemistry", "hubble_deep_field")
DISTORTIONS = ("jpeg", "blur", "noise", "colour")
STRENGTHS = (0.05, 0.25, 1.0, 2.0)  # 0.05: near-identical pairs, where relative error is largest
SCORES: tuple[str, ...] = ("vgg", "style", "ssim", "mse", "psnr")
NETWORK_SCORES = ("lpips", "lpips_vgg", "dists")


def random_networks(seed: int = 0) -> dict[str, nn.Module]:
    """The LPIPS AlexNet, LPIPS VGG16 and DISTS networks on seeded random backbones."""
    networks: dict[str, nn.Module] = {}
    for spec in (registry.ALEXNET, registry.VGG16):
        loaded = load_backbone(spec, "random", seed=seed)
        if not isinstance(loaded, Loaded):
            raise RuntimeError(loaded.message)
        networks.update({n.name: n.build(loaded.features) for n in spec.networks})
    return networks


def photo_pairs(
    side: int,
    photos: Sequence[str],
    distortions: Sequence[str],
    strengths: Sequence[float],
    scores: frozenset[ScoreName] = DEFAULT_SCORES,
) -> tuple[list[PairRequest], list[str]]:
    """Every photo under every distortion and strength, plus one identical pair (last)."""
    pairs: list[PairRequest] = []
    labels: list[str] = []
    for name in photos:
        image = photo(name, side)
        for kind in distortions:
            for strength in strengths:
                candidate = distort(image, kind, seed=len(pairs), strength=strength)
                pairs.append(PairRequest(to_tensor(image), to_tensor(candidate), scores))
                labels.append(f"{name}/{kind}/{strength:g}")
    same = to_tensor(photo(photos[0], side))
    pairs.append(PairRequest(same, same.clone(), scores))
    labels.append(f"{photos[0]}/identical")
    return pairs, labels


class KeepTaps:
    """Keeps every batch's taps as ``runner.forward`` returns them (for ``--gram``)."""

    def __init__(self, runner: ModelRunner) -> None:
        self.taps: list[list[torch.Tensor]] = []
        self._forward = runner.forward
        runner.forward = self  # type: ignore[method-assign]

    def __call__(self, images: torch.Tensor, network: str = "vgg19") -> list[torch.Tensor]:
        out = self._forward(images, network)
        if network == "vgg19":
            self.taps.append(out)
        return out


def score_all(scorer: Scorer, pairs: Sequence[PairRequest], batch: int) -> list[PairScores]:
    out: list[PairScores] = []
    for start in range(0, len(pairs), batch):
        out.extend(scorer.score(pairs[start : start + batch]))
    return out


def relative(a: float, b: float) -> float:
    return abs(b - a) / abs(a) if a else (0.0 if a == b else float("inf"))


def spearman(a: Sequence[float], b: Sequence[float]) -> float:
    from scipy.stats import spearmanr

    return float(spearmanr(a, b).statistic)


def deviation_rows(
    reference: Sequence[PairScores], other: Sequence[PairScores], names: Sequence[str] = SCORES
) -> tuple[list[list[str]], dict[str, Any]]:
    """Per score: median and max relative deviation, and Spearman, over the distinct pairs."""
    rows, data = [], {}
    for name in names:
        a = [getattr(s, name) for s in reference[:-1]]
        b = [getattr(s, name) for s in other[:-1]]
        devs = [relative(x, y) for x, y in zip(a, b, strict=True)]
        rho = spearman(a, b)
        data[name] = {"median": statistics.median(devs), "max": max(devs), "spearman": rho}
        rows.append(
            [
                name,
                f"{100 * statistics.median(devs):.3f} %",
                f"{100 * max(devs):.3f} %",
                f"{rho:.5f}",
            ]
        )
    return rows, data


def by_strength(
    reference: Sequence[PairScores],
    other: Sequence[PairScores],
    labels: Sequence[str],
    names: Sequence[str] = ("vgg", "style"),
) -> list[list[str]]:
    """Median and max relative deviation of ``names`` per distortion strength, and the largest
    absolute deviation beside the median fp32 score of that strength."""
    groups: dict[str, list[int]] = {}
    for i, label in enumerate(labels[:-1]):
        groups.setdefault(label.rsplit("/", 1)[1], []).append(i)
    rows = []
    for strength, indices in sorted(groups.items(), key=lambda kv: float(kv[0])):
        row = [strength, str(len(indices))]
        for name in names:
            a = [getattr(reference[i], name) for i in indices]
            b = [getattr(other[i], name) for i in indices]
            devs = [relative(x, y) for x, y in zip(a, b, strict=True)]
            worst = max(abs(x - y) for x, y in zip(a, b, strict=True))
            row += [
                f"{100 * statistics.median(devs):.2f} %",
                f"{100 * max(devs):.1f} %",
                f"{worst:.2e} / {statistics.median(a):.2e}",
            ]
        rows.append(row)
    return rows


def identical_exact(scores: PairScores) -> bool:
    exact = scores.vgg == 0.0 and scores.style == 0.0 and scores.ssim == 1.0 and scores.mse == 0.0
    return exact and all(getattr(scores, name) in (None, 0.0) for name in NETWORK_SCORES)


def gram_in_bf16(
    truth: Sequence[PairScores],
    today: Sequence[PairScores],
    taps: Sequence[list[torch.Tensor]],
    pairs: Sequence[PairRequest],
    batch: int,
) -> list[str]:
    """style with the Gram matrices in bf16 too, from the bf16 taps the scorer computed (one
    forward pass per batch of ``score_all``: its distinct pairs' references, then their
    candidates; identical pairs skip the model and score 0), against fp32 and today."""
    bf16_gram: list[float] = []
    forwards = iter(taps)
    for start in range(0, len(pairs), batch):
        chunk = pairs[start : start + batch]
        if all(p.identical for p in chunk):
            bf16_gram.extend(0.0 for _ in chunk)
            continue
        forward = next(forwards)
        n = forward[0].shape[0] // 2
        gx = _grams_bf16([t[:n] for t in forward])
        gy = _grams_bf16([t[n:] for t in forward])
        distances = iter(style_distance(gx, gy)[0].tolist())
        bf16_gram.extend(0.0 if p.identical else next(distances) for p in chunk)
    bf16_gram = bf16_gram[:-1]  # the last pair is the identical control
    exact = [s.style for s in truth[:-1]]
    rows = []
    for label, values in (
        ("fp32 Gram of the bf16 taps (today)", [s.style for s in today[:-1]]),
        ("bf16 Gram of the bf16 taps", bf16_gram),
    ):
        devs = [relative(a, b) for a, b in zip(exact, values, strict=True)]  # type: ignore[arg-type]
        rows.append(
            f"| {label} | {100 * statistics.median(devs):.3f} % | {100 * max(devs):.3f} % | "
            f"{spearman(exact, values):.5f} |"  # type: ignore[arg-type]
        )
    return ["| style from | median | max | Spearman |", "|---|---:|---:|---:|", *rows]


def _grams_fp32(taps: list[torch.Tensor]) -> list[torch.Tensor]:
    return [gram_matrix(t) for t in taps]


def _grams_bf16(taps: list[torch.Tensor]) -> list[torch.Tensor]:
    """Gram matrices with bf16 inputs, fp32 accumulation, a bf16 result (what bmm returns under
    autocast), normalised in fp32."""
    out = []
    for t in taps:
        n, c, h, w = t.shape
        rows = t.to(torch.bfloat16).permute(0, 2, 3, 1).reshape(n, h * w, c)
        with torch.autocast(t.device.type, dtype=torch.bfloat16):
            gram = torch.bmm(rows.transpose(1, 2), rows)
        out.append(gram.float().div_(c * h * w))
    return out


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--precisions", default="bf16")
    parser.add_argument("--side", type=int, default=224)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--compiled", action="store_true", help="low precision compiled")
    parser.add_argument("--gram", action="store_true", help="also: Gram matrices in bf16")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--no-networks", action="store_true", help="vgg, style and pixels only")
    parser.add_argument("--out", type=Path, default=Path("results/precision"))
    args = parser.parse_args(argv)
    networks = {} if args.no_networks else random_networks()
    names = SCORES if args.no_networks else (*SCORES, *NETWORK_SCORES)
    photos: Sequence[str] = PHOTOS
    distortions: Sequence[str] = DISTORTIONS
    strengths: Sequence[float] = STRENGTHS
    if args.quick:
        args.side, photos, distortions, strengths = 48, PHOTOS[:3], ("jpeg", "blur"), (0.25, 1.0)
    device = torch.device(args.device)
    print(header("simscore precision benchmark", device))
    results = Results(args.out, "precision", {"argv": sys.argv, "load_average": load_average()})
    features, _ = load_features("random", seed=0)
    extractor = VGGFeatures(features)
    scores_asked = DEFAULT_SCORES if args.no_networks else ALL_SCORES
    pairs, labels = photo_pairs(args.side, photos, distortions, strengths, scores_asked)
    print(
        f"{len(pairs) - 1} distinct pairs at {args.side} px ({len(photos)} photos x "
        f"{', '.join(distortions)} x strengths {', '.join(map(str, strengths))}) "
        "and one identical\n"
    )
    started = time.monotonic()
    fp32 = score_all(
        Scorer(ModelRunner(extractor, device=device, networks=networks)), pairs, args.batch
    )
    print(f"fp32: {time.monotonic() - started:.0f} s\n")
    for precision in args.precisions.split(","):
        low = cast(Precision, precision)
        runner = ModelRunner(
            extractor,
            device=device,
            networks=networks,
            precision=low,
            compile_model=args.compiled,
        )
        started = time.monotonic()
        if args.compiled:
            runner.warm_up([(args.side, args.side)], args.batch)
        kept = KeepTaps(runner)
        scores = score_all(Scorer(runner), pairs, args.batch)
        took = time.monotonic() - started
        rows, data = deviation_rows(fp32, scores, names)
        data["identical_exact"] = identical_exact(scores[-1])
        data["worst"] = {
            name: labels[max(range(len(pairs) - 1), key=partial(_dev, fp32, scores, name))]
            for name in ("vgg", "style")
        }
        data["pairs"] = {
            label: {n: (getattr(a, n), getattr(b, n)) for n in names}
            for label, a, b in zip(labels, fp32, scores, strict=True)
        }
        mode = "compiled" if args.compiled else "eager"
        print(f"## {precision} ({mode}) against fp32 ({took:.0f} s, load {load_average()})\n")
        print(table(["score", "median rel. dev.", "max rel. dev.", "Spearman"], rows))
        print(
            f"\nIdentical pair exact (vgg = style = 0, ssim = 1): {data['identical_exact']}; "
            f"largest deviation: vgg {data['worst']['vgg']}, style {data['worst']['style']}\n"
        )
        print("### By distortion strength (largest absolute deviation / median fp32 score)\n")
        headers = ["strength", "pairs", "vgg median", "vgg max", "vgg abs", "style median"]
        print(table([*headers, "style max", "style abs"], by_strength(fp32, scores, labels)))
        print()
        if not args.no_networks:
            print("### The network scores by distortion strength\n")
            columns = ["strength", "pairs"]
            columns += [f"{n} {c}" for n in NETWORK_SCORES for c in ("median", "max", "abs")]
            print(table(columns, by_strength(fp32, scores, labels, NETWORK_SCORES)))
            print()
        if args.gram and precision == "bf16":
            print("### Style with the Gram matrices in bf16 as well (against fp32)\n")
            gram = gram_in_bf16(fp32, scores, kept.taps, pairs, args.batch)
            print("\n".join(gram) + "\n")
            data["gram_bf16"] = gram
        results.add(f"{precision}-{mode}", data)
    return 0


def _dev(a: Sequence[PairScores], b: Sequence[PairScores], name: str, i: int) -> float:
    return relative(getattr(a[i], name), getattr(b[i], name))


if __name__ == "__main__":
    sys.exit(main())
