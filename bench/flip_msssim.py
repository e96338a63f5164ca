"""FLIP and MS-SSIM as pure functions against their reference implementations; not a test.

    python bench/flip_msssim.py                       # CPU, a few minutes; Markdown on stdout
    python bench/flip_msssim.py --threads 1           # torch on one thread (the C++ tool keeps all)
    python bench/flip_msssim.py --device cuda         # ours on the GPU, the references on the CPU

Two tables, each from interleaved rounds (the contenders take turns, so load from elsewhere on
a shared machine lands on all of them alike; medians):

* ``ms_ssim`` on one batch of ``--pairs`` photograph pairs at ``--side`` px against
  ``pytorch_msssim.ms_ssim(..., data_range=1, size_average=False)`` on the same float32 tensors
  (target: at most 0.5x its time);
* ``flip`` (``app.scores.flip.flip_map`` on the batch, then the means) against NVIDIA's
  ``flip_evaluator.evaluate(ref, test, "LDR")`` (C++, OpenMP on all cores) scoring the same
  pairs one after the other, as its API takes them: pairs per second. The HTTP side (the service
  under load) is ``bench/flip_http.py``;
* a /compare/batch's case, the first reference against every candidate: ``ms_ssim_against``
  and ``flip_against`` (the reference's share done once) against the same functions with the
  reference repeated per pair.

The largest difference of the scores from each reference is printed beside the times. On the
CPU the glibc allocator is tuned as the service tunes it.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from app.scores import flip_against, flip_map, mean_error, ms_ssim, ms_ssim_against
from app.scoring.device import tune_cpu_allocator
from bench.common import header, interleaved, table
from devtools.images import photo_pair


def ms_ssim_section(
    x: torch.Tensor, y: torch.Tensor, device: torch.device, rounds: int
) -> list[list[str]]:
    from pytorch_msssim import ms_ssim as reference

    ours_x, ours_y = x.to(device), y.to(device)

    def ours() -> object:
        return ms_ssim(ours_x, ours_y).cpu()

    def theirs() -> object:
        return reference(x, y, data_range=1, size_average=False)

    times = interleaved({"ours": ours, "pytorch_msssim": theirs}, rounds=rounds, device=device)
    exact = reference(x.double(), y.double(), data_range=1, size_average=False)
    worst = float((ms_ssim(ours_x, ours_y).cpu() - exact).abs().max())
    count = x.shape[0]
    return [
        [f"ms_ssim (simscore, {device.type})", f"{times['ours'] * 1000:.0f}",
         f"{count / times['ours']:.1f}", f"{times['ours'] / times['pytorch_msssim']:.2f}x",
         f"{worst:.1e}"],
        ["pytorch_msssim 1.0.0 (cpu)", f"{times['pytorch_msssim'] * 1000:.0f}",
         f"{count / times['pytorch_msssim']:.1f}", "1.00x", "0 (float64: ref.)"],
    ]  # fmt: skip


def shared_section(
    x: torch.Tensor, y: torch.Tensor, device: torch.device, rounds: int
) -> list[list[str]]:
    """One reference against every candidate (a /compare/batch): the reference's share done
    once (``flip_against``, ``ms_ssim_against``) against the reference repeated per pair."""
    reference, candidates = x[:1].to(device), y.to(device)
    repeated = reference.expand_as(candidates).contiguous()
    contenders: dict[str, Callable[[], torch.Tensor]] = {
        "ms_ssim_against": lambda: ms_ssim_against(reference, candidates).cpu(),
        "ms_ssim, reference repeated": lambda: ms_ssim(repeated, candidates).cpu(),
        "flip_against": lambda: mean_error(flip_against(reference, candidates)).cpu(),
        "flip_map, reference repeated": lambda: mean_error(flip_map(repeated, candidates)).cpu(),
    }
    times = interleaved(dict(contenders), rounds=rounds, device=device)
    rows = []
    for shared, alone in (("ms_ssim_against", "ms_ssim, reference repeated"),
                          ("flip_against", "flip_map, reference repeated")):  # fmt: skip
        worst = float((contenders[shared]() - contenders[alone]()).abs().max())
        rows.append([shared, f"{times[shared] * 1000:.0f}",
                     f"{times[shared] / times[alone]:.2f}x", f"{worst:.1e}"])  # fmt: skip
        rows.append([alone, f"{times[alone] * 1000:.0f}", "1.00x", ""])
    return rows


def flip_section(
    x: torch.Tensor, y: torch.Tensor, device: torch.device, rounds: int
) -> list[list[str]]:
    import flip_evaluator

    ours_x, ours_y = x.to(device), y.to(device)
    references = [np.ascontiguousarray(image.permute(1, 2, 0).numpy()) for image in x]
    candidates = [np.ascontiguousarray(image.permute(1, 2, 0).numpy()) for image in y]

    def ours() -> torch.Tensor:
        return mean_error(flip_map(ours_x, ours_y)).cpu()

    def theirs() -> list[float]:
        return [
            float(flip_evaluator.evaluate(r, c, "LDR", applyMagma=False)[1])
            for r, c in zip(references, candidates, strict=True)
        ]

    times = interleaved({"ours": ours, "flip_evaluator": theirs}, rounds=rounds, device=device)
    worst = float((ours() - torch.tensor(theirs(), dtype=torch.float64)).abs().max())
    count = x.shape[0]
    ours_rate, their_rate = count / times["ours"], count / times["flip_evaluator"]
    return [
        [f"flip (simscore, {device.type})", f"{times['ours'] * 1000 / count:.1f}",
         f"{ours_rate:.1f}", f"{ours_rate / their_rate:.2f}x", f"{worst:.1e}"],
        ["flip_evaluator 1.7 (C++, all cores)", f"{times['flip_evaluator'] * 1000 / count:.1f}",
         f"{their_rate:.1f}", "1.00x", "0 (ref.)"],
    ]  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--pairs", type=int, default=16)
    parser.add_argument("--side", type=int, default=512)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: all)")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    device = torch.device(args.device)
    if device.type == "cpu":
        tune_cpu_allocator()
    if args.threads:
        torch.set_num_threads(args.threads)
    pairs = [photo_pair(args.side, seed) for seed in range(args.pairs)]
    x = torch.stack([p[0] for p in pairs])
    y = torch.stack([p[1] for p in pairs])
    print(header("FLIP and MS-SSIM against their reference implementations", device))
    print(f"{args.pairs} photograph pairs at {args.side} px (a noisy copy each), {args.rounds} "
          "interleaved rounds, medians.\n")  # fmt: skip
    with torch.inference_mode():
        rows = ms_ssim_section(x, y, device, args.rounds)
        print(table(["ms_ssim, one batch", "ms", "pairs/s", "time vs ref", "max abs diff"], rows))
        print()
        rows = flip_section(x, y, device, args.rounds)
        print(table(["flip", "ms/pair", "pairs/s", "rate vs ref", "max abs diff"], rows))
        print()
        rows = shared_section(x, y, device, args.rounds)
        headers = ["one reference, every candidate", "ms", "time vs repeated", "max abs diff"]
        print(table(headers, rows))


if __name__ == "__main__":
    main()
