"""Engine benchmark: pairs/s against bare model throughput, the metrics' share, SSIM and piq.

Prints Markdown tables (recorded in docs/benchmarks.md). Not a test. Run:

    .venv/bin/python bench/engine.py                  # everything (several minutes on 2 cores)
    .venv/bin/python bench/engine.py --quick          # small sizes, one repeat

Sections:
1. Engine vs bare model: ``Scorer.score`` pairs/s and VGG19-to-relu5_1 forward pairs/s on the
   same decoded tensors, same process; the engine's time split into its own forward pass and
   everything else (the metrics), at 224 and 512 px for batch sizes 1, 2, 4, 8, 16.
2. Layout and allocator: channels-last and the glibc allocator setting, on and off.
3. SSIM: ours vs pytorch_msssim.ssim vs scikit-image at 512 and 1024 px.
4. All five scores vs piq doing the same work (ContentLoss and StyleLoss on the same VGG19
   module and taps, piq.ssim(downsample=False), MSE).
5. Peak RSS of a process that has loaded the model on CPU.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from functools import partial
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from app.engine import tune_cpu_allocator

from app.metrics import mse, ssim
from app.models.vgg import TAP_INDICES, VGGFeatures
from app.models.weights import load_features
from app.scoring import PairRequest, Scorer
from bench.common import best_of, machine, peak_rss_mb, photo_pair, table


def pairs_for(side: int, n: int) -> list[PairRequest]:
    out = []
    for i in range(n):
        ref, cand = photo_pair(side, seed=i)
        out.append(PairRequest(ref, cand))
    return out


def engine_vs_bare(
    extractor: VGGFeatures, sides: list[int], batches: list[int], repeats: int
) -> str:
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    scorer = Scorer(extractor, device=device)
    forward_s: list[float] = []

    def pre(module: object, args: object) -> None:
        forward_s.append(-time.perf_counter())

    def post(module: object, args: object, out: object) -> None:
        forward_s[-1] += time.perf_counter()

    rows = []
    for side in sides:
        for n in batches:
            pairs = pairs_for(side, n)
            images = torch.cat(
                [
                    torch.stack([p.reference for p in pairs]),
                    torch.stack([p.candidate for p in pairs]),
                ]
            ).to(device)
            images = images.contiguous(memory_format=torch.channels_last)

            def bare(images: torch.Tensor = images) -> None:
                with torch.inference_mode():
                    extractor(images)

            bare_s = best_of(bare, repeats=repeats)
            hooks = [
                scorer.extractor.register_forward_pre_hook(pre),
                scorer.extractor.register_forward_hook(post),
            ]
            forward_s.clear()
            engine_s = best_of(partial(scorer.score, pairs), repeats=repeats)
            for hook in hooks:
                hook.remove()
            fwd = sorted(forward_s[1:])[len(forward_s[1:]) // 2]  # median, warm-up dropped
            other = max(engine_s - fwd, 0.0)
            rows.append(
                [
                    f"{side}",
                    f"{n}",
                    f"{n / bare_s:.2f}",
                    f"{n / engine_s:.2f}",
                    f"{engine_s / bare_s:.3f}",
                    f"{fwd * 1000:.0f}",
                    f"{other * 1000:.0f}",
                    f"{100 * other / fwd:.1f} %",
                ]
            )
            print(" ".join(rows[-1]), file=sys.stderr)
    return table(
        [
            "px",
            "batch",
            "bare pairs/s",
            "engine pairs/s",
            "engine/bare time",
            "forward ms",
            "metrics ms",
            "metrics/forward",
        ],
        rows,
    )


def layout_and_allocator(side: int, n: int, repeats: int) -> str:
    """Runs each variant in a fresh process so the allocator setting is really off or on."""
    rows = []
    for channels_last in (False, True):
        for tuned in (False, True):
            code = (
                "import sys,torch; sys.path.insert(0,'.');"
                "from bench.engine import _variant;"
                f"print(_variant({side},{n},{repeats},{channels_last},{tuned}))"
            )
            out = subprocess.run(
                [sys.executable, "-c", code], capture_output=True, text=True, check=True
            )
            seconds = float(out.stdout.strip().splitlines()[-1])
            rows.append((channels_last, tuned, seconds))
    base = rows[0][2]
    return table(
        ["channels-last", "allocator tuned", "pairs/s", "speed-up vs neither"],
        [[str(cl), str(t), f"{n / s:.2f}", f"{base / s:.2f}x"] for cl, t, s in rows],
    )


def _variant(side: int, n: int, repeats: int, channels_last: bool, tuned: bool) -> float:
    if tuned:
        tune_cpu_allocator()
    features, _ = load_features("random")
    scorer = Scorer(VGGFeatures(features), device=torch.device("cpu"), channels_last=channels_last)
    pairs = pairs_for(side, n)
    return best_of(lambda: scorer.score(pairs), repeats=repeats)


def ssim_table(sides: list[int], repeats: int) -> str:
    import numpy as np
    import pytorch_msssim
    from skimage.metrics import structural_similarity

    rows = []
    for side in sides:
        ref, cand = photo_pair(side)
        x, y = ref[None], cand[None]
        xn = ref.permute(1, 2, 0).numpy().astype(np.float64)
        yn = cand.permute(1, 2, 0).numpy().astype(np.float64)
        ours = best_of(partial(ssim, x, y), repeats=repeats * 3)
        theirs = best_of(
            partial(pytorch_msssim.ssim, x, y, data_range=1.0, size_average=False),
            repeats=repeats * 3,
        )
        sk = best_of(
            partial(
                structural_similarity,
                xn,
                yn,
                channel_axis=2,
                data_range=1,
                gaussian_weights=True,
                sigma=1.5,
                use_sample_covariance=False,
            ),
            repeats=repeats * 3,
        )
        rows.append(
            [
                f"{side}",
                f"{ours * 1000:.1f}",
                f"{theirs * 1000:.1f}",
                f"{sk * 1000:.1f}",
                f"{ours / theirs:.2f}",
                f"{ours / sk:.2f}",
            ]
        )
    return table(
        ["px", "ours ms", "pytorch_msssim ms", "scikit-image ms", "ours/msssim", "ours/skimage"],
        rows,
    )


def piq_table(extractor: VGGFeatures, sides: list[int], n: int, repeats: int) -> str:
    import piq

    device = torch.device("cpu")
    scorer = Scorer(extractor, device=device)
    layers = [f"{i}" for i in TAP_INDICES]
    content = piq.ContentLoss(
        feature_extractor=extractor.features,
        layers=layers,
        weights=[1 / 32, 1 / 16, 1 / 8, 1 / 4, 1.0],
        replace_pooling=False,
        distance="mae",
        reduction="none",
        mean=list(extractor.mean.flatten().tolist()),
        std=list(extractor.std.flatten().tolist()),
        normalize_features=False,
    )
    style = piq.StyleLoss(
        feature_extractor=extractor.features,
        layers=layers,
        weights=[1.0] * 5,
        replace_pooling=False,
        distance="mae",
        reduction="none",
        mean=list(extractor.mean.flatten().tolist()),
        std=list(extractor.std.flatten().tolist()),
        normalize_features=False,
    )
    rows = []
    for side in sides:
        pairs = pairs_for(side, n)
        x = torch.stack([p.reference for p in pairs])
        y = torch.stack([p.candidate for p in pairs])

        def with_piq(x: torch.Tensor = x, y: torch.Tensor = y) -> None:
            with torch.inference_mode():
                content(x, y)
                style(x, y)
                piq.ssim(x, y, data_range=1.0, downsample=False, reduction="none")
                ((x - y) ** 2).mean(dim=(1, 2, 3))

        ours = best_of(partial(scorer.score, pairs), repeats=repeats)
        theirs = best_of(with_piq, repeats=repeats)
        rows.append(
            [f"{side}", f"{n}", f"{n / ours:.2f}", f"{n / theirs:.2f}", f"{theirs / ours:.2f}x"]
        )
    _ = mse  # the engine computes MSE itself; piq's side uses a plain expression
    return table(["px", "batch", "simscore pairs/s", "piq pairs/s", "speed-up"], rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="small sizes, one repeat")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--sides", type=int, nargs="*", default=[224, 512])
    parser.add_argument("--batches", type=int, nargs="*", default=[1, 2, 4, 8, 16])
    parser.add_argument("--sections", default="engine,layout,ssim,piq,rss")
    args = parser.parse_args()
    if args.quick:
        args.sides, args.batches, args.repeats = [64], [1, 4], 1
    sections = set(args.sections.split(","))
    tune_cpu_allocator()
    features, _ = load_features("random")
    extractor = VGGFeatures(features)
    print(f"# simscore engine benchmark\n\nMachine: {machine()}\n")
    print(f"Date: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}\n")
    if "rss" in sections:
        print(f"Peak RSS after loading the model: {peak_rss_mb():.0f} MB\n")
    if "engine" in sections:
        print("## Engine vs bare model\n")
        print(engine_vs_bare(extractor, args.sides, args.batches, args.repeats) + "\n")
    if "layout" in sections and not torch.cuda.is_available():
        side = 64 if args.quick else 224
        print(f"## Channels-last and allocator (CPU, {side} px, batch 4)\n")
        print(layout_and_allocator(side, 4, args.repeats) + "\n")
    if "ssim" in sections:
        print("## SSIM (one pair)\n")
        print(ssim_table([64, 128] if args.quick else [512, 1024], args.repeats) + "\n")
    if "piq" in sections:
        print("## All five scores vs piq\n")
        print(piq_table(extractor, args.sides, 4, args.repeats) + "\n")
    if "rss" in sections:
        print(f"Peak RSS at the end of the run: {peak_rss_mb():.0f} MB\n")


if __name__ == "__main__":
    main()
