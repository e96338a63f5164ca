"""The model alone and piq, each in a fresh process, timed on demand: the baselines of the engine
benchmark's table.

A fresh process per contender keeps the glibc allocator setting (process-wide) its own. The
benchmark starts them all, then asks each in turn, interleaved with the HTTP runs, to score a
number of batches (``run N`` on stdin, one JSON line back), so load from elsewhere on a shared
machine hits every row alike.

    python -m bench.contenders tuned --side 224 --pairs 8      # by hand: then type "run 3"

Contenders (VGG19 to relu5_1 with the seeded random weights; every batch is ``--pairs`` distinct
pairs, both images of each through the model):

* ``plain``: the bare model as a user would run it: fp32 (IEEE: TF32 off on CUDA), NCHW, glibc's
  default allocator.
* ``tuned``: the bare model with the service's settings: channels-last and the allocator tuning
  (``SIMSCORE_CPU_ALLOCATOR_TUNING``); with ``--precision``/``--compile`` as ``ModelRunner``
  runs them.
* ``piq``: the same five scores with piq (``ContentLoss`` and ``StyleLoss`` on the same VGG19
  module and taps, ``piq.ssim(downsample=False)``, MSE), as a user would run it (NCHW, default
  allocator).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

import torch

from app.models.vgg import TAP_INDICES, VGGFeatures
from app.models.weights import load_features
from app.scoring.device import configure_cuda, tune_cpu_allocator
from app.scoring.runner import ModelRunner
from bench.common import ROOT, distinct_pairs, sync

MODES = ("plain", "tuned", "piq")


def build(mode: str, args: argparse.Namespace) -> Callable[[], object]:
    """One batch of ``mode`` as a function (the pairs prepared up front, on the device)."""
    device = torch.device(args.device)
    configure_cuda(cudnn_benchmark=False)  # IEEE fp32: PyTorch's default allows TF32 in cuDNN
    if mode == "tuned" and device.type == "cpu":
        tune_cpu_allocator()
    features, _ = load_features("random", seed=0)
    extractor = VGGFeatures(features).to(device).eval()
    pairs = distinct_pairs(args.side, args.pairs)
    x = torch.stack([p.reference for p in pairs]).to(device)
    y = torch.stack([p.candidate for p in pairs]).to(device)
    images = torch.cat([x, y])
    if mode == "plain":

        def plain() -> object:
            with torch.inference_mode():
                return extractor(images)

        return plain
    if mode == "tuned":
        runner = ModelRunner(
            extractor,
            device=device,
            precision=args.precision,
            compile_model=args.compile,
        )
        if args.compile:
            runner.warm_up([(args.side, args.side)], args.pairs)
        batch = images.contiguous(memory_format=torch.channels_last)
        return lambda: runner.forward(batch)
    if mode == "piq":
        return piq_scores(extractor, x, y)
    raise ValueError(f"unknown contender {mode!r}; choose from {', '.join(MODES)}")


def piq_scores(extractor: VGGFeatures, x: torch.Tensor, y: torch.Tensor) -> Callable[[], object]:
    """vgg, style, ssim and mse of the pairs ``(x, y)`` with piq doing the work."""
    import piq

    common: dict[str, Any] = {
        "feature_extractor": extractor.features,
        "layers": [str(i) for i in TAP_INDICES],
        "replace_pooling": False,
        "distance": "mae",
        "reduction": "none",
        "mean": extractor.mean.flatten().tolist(),
        "std": extractor.std.flatten().tolist(),
        "normalize_features": False,
    }
    content = piq.ContentLoss(weights=[1 / 32, 1 / 16, 1 / 8, 1 / 4, 1.0], **common)
    style = piq.StyleLoss(weights=[1.0] * 5, **common)

    def scores() -> object:
        with torch.inference_mode():
            return (
                content(x, y),
                style(x, y),
                piq.ssim(x, y, data_range=1.0, downsample=False, reduction="none"),
                ((x - y) ** 2).mean(dim=(1, 2, 3)),
            )

    return scores


def serve_commands(batch: Callable[[], object], pairs: int, device: torch.device) -> None:
    """``run N`` -> ``{"seconds": ..., "pairs": ...}``; one untimed batch first."""
    batch()
    sync(device)
    print(json.dumps({"ready": True}), flush=True)
    for line in sys.stdin:
        words = line.split()
        if not words or words[0] != "run":
            break
        count = int(words[1])
        started = time.perf_counter()
        for _ in range(count):
            batch()
        sync(device)
        seconds = time.perf_counter() - started
        print(json.dumps({"seconds": seconds, "pairs": count * pairs}), flush=True)


class Contender:
    """A contender in its own process (see the module docstring)."""

    def __init__(self, mode: str, *, side: int, pairs: int, device: str, **options: Any) -> None:
        self.mode = mode
        command = [
            sys.executable,
            "-m",
            "bench.contenders",
            mode,
            f"--side={side}",
            f"--pairs={pairs}",
            f"--device={device}",
            f"--precision={options.get('precision', 'fp32')}",
        ]
        if options.get("compile"):
            command.append("--compile")
        self.process = subprocess.Popen(
            command, cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
        )

    def wait_ready(self) -> None:
        self._read()

    def run(self, batches: int) -> float:
        """Pairs per second over ``batches`` batches."""
        if self.process.stdin is None:
            raise RuntimeError("no stdin")
        self.process.stdin.write(f"run {batches}\n")
        self.process.stdin.flush()
        reply = self._read()
        return float(reply["pairs"]) / float(reply["seconds"])

    def close(self) -> None:
        if self.process.stdin is not None:
            self.process.stdin.close()
        try:
            self.process.wait(30)
        except subprocess.TimeoutExpired:
            self.process.kill()

    def _read(self) -> dict[str, Any]:
        if self.process.stdout is None:
            raise RuntimeError("no stdout")
        line = self.process.stdout.readline()
        if not line:
            raise RuntimeError(f"contender {self.mode} exited ({self.process.wait()})")
        reply: dict[str, Any] = json.loads(line)
        return reply


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("mode", choices=MODES)
    parser.add_argument("--side", type=int, default=224)
    parser.add_argument("--pairs", type=int, default=8)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--precision", default="fp32", choices=("fp32", "bf16", "fp16"))
    parser.add_argument("--compile", action="store_true")
    args = parser.parse_args(argv)
    serve_commands(build(args.mode, args), args.pairs, torch.device(args.device))


if __name__ == "__main__":
    main()
