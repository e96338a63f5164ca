"""``bench/gpu.py``'s sections on the model and the scorer in this process (no server, no batch
worker: those are in ``bench/gpu_service.py`` and ``bench/gpu_worker.py``): each a function of
the parsed arguments that reports its rows with ``bench.sections.emit`` as it measures them.
Every row says which fp32 math its backbone ran (``tf32``): IEEE fp32 in the ``fp32`` mode, TF32
in ``fp32+tf32`` and, as the service runs them, bf16 and fp16 (there TF32 reaches only what
autocast leaves in fp32); the metrics always run in IEEE fp32 (``app.scoring.device``).
"""

from __future__ import annotations

import argparse
import copy
import importlib.util
import statistics
import sys
import time
from collections.abc import Sequence
from functools import partial
from typing import Any, cast

import torch

from app.cpus import available_cpus, cgroup_cpu_quota
from app.models.vgg import VGGFeatures
from app.models.weights import load_features
from app.scoring import ModelRunner, PairRequest, Scorer
from app.scoring.device import configure_cuda, tf32_enabled
from app.vocabulary import Precision
from bench import precision
from bench.common import distinct_pairs, median_seconds
from bench.sections import emit
from devtools.images import photo

PACKAGES = (
    "fastapi",
    "uvicorn",
    "pydantic_settings",
    "python_multipart",
    "httpx",
    "piq",
    "pytorch_msssim",
    "pytest",
    "pytest_asyncio",
    "pytest_timeout",
    "skimage",
    "scipy",
)
# (precision, TF32 for the backbone) as the service runs each: TF32 off in fp32 unless named.
MODES = {
    "fp32": ("fp32", False),
    "fp32+tf32": ("fp32", True),
    "bf16": ("bf16", True),
    "fp16": ("fp16", True),
}
COMPILED_MAX_BATCH = 16  # the compiled sweep warms up (compiles) row counts 1 to 2 x this
ASPECT_SHAPES = (
    (640, 480),
    (480, 640),
    (1024, 768),
    (768, 1024),
    (800, 600),
    (600, 400),
    (1024, 576),
    (576, 1024),
    (512, 384),
    (720, 540),
    (960, 640),
    (400, 300),
)


def start(args: argparse.Namespace) -> torch.device:
    """Every section starts here: its device, with IEEE fp32 process-wide (PyTorch's default
    allows TF32 in cuDNN) and cuDNN autotuning off."""
    configure_cuda(cudnn_benchmark=False)  # flags only: harmless on a CPU, recorded alike
    return torch.device(args.device)


def extractor() -> VGGFeatures:
    features, _ = load_features("random", seed=0)
    return VGGFeatures(features)


def runner_for(model: VGGFeatures, device: torch.device, mode: str, **options: Any) -> ModelRunner:
    """A runner in ``mode`` (``MODES``) on its own copy of ``model``."""
    name, tf32 = MODES[mode]
    return ModelRunner(
        copy.deepcopy(model), device=device, precision=cast(Precision, name), tf32=tf32, **options
    )


def math_of(runner: ModelRunner) -> dict[str, Any]:
    """What fp32 math a row ran: the backbone's TF32 and the process-wide flags."""
    conv, matmul = tf32_enabled()
    return {"tf32": runner.tf32, "process_tf32": conv or matmul}


# -- preflight ---------------------------------------------------------------------------------


def preflight(args: argparse.Namespace) -> None:
    """The card, versions, packages, CPUs, and a forward pass per precision at 64 px."""
    device = start(args)
    cuda = device.type == "cuda"
    emit(
        {
            "what": "device",
            "gpu": torch.cuda.get_device_name(device) if cuda else f"none ({device})",
            "memory_gib": round(torch.cuda.get_device_properties(device).total_memory / 2**30, 1)
            if cuda
            else 0,
            "torch": torch.__version__,
            "cuda": torch.version.cuda,
            "cudnn": torch.backends.cudnn.version(),
            "python": sys.version.split()[0],
            "cpus": available_cpus(),
            "cpu_quota": cgroup_cpu_quota(),
            "torch_threads": torch.get_num_threads(),
            "process_tf32": any(tf32_enabled()),
        }
    )
    emit({"what": "packages", **{n: importlib.util.find_spec(n) is not None for n in PACKAGES}})
    emit({"what": "photographs", **_photographs()})
    model = extractor()
    for mode in ("fp32", "bf16", "fp16") if cuda else ("fp32",):
        runner = runner_for(model, device, mode)
        started = time.perf_counter()
        images = runner.upload([torch.rand(3, 64, 64)] * 4, [torch.rand(3, 64, 64)] * 4)
        runner.forward(images)
        runner.synchronize()
        first = time.perf_counter() - started
        again = median_seconds(partial(runner.forward, images), repeats=5, device=device)
        emit(
            {
                "what": f"forward {mode} 64 px, 8 images",
                "first_ms": round(first * 1000),
                "next_ms": round(again * 1000, 2),
                **math_of(runner),
            }
        )


def _photographs() -> dict[str, str]:
    """Whether scikit-image's photographs the tests and sections use load here (offline)."""
    found = {}
    for name in precision.PHOTOS[:4]:
        try:
            found[name] = "ok" if photo(name, 32).shape == (32, 32, 3) else "wrong shape"
        except Exception as exc:  # a missing data file, a missing package: say which
            found[name] = f"{type(exc).__name__}: {exc}"[:200]
    return found


# -- agreement with the CPU --------------------------------------------------------------------


def agreement(args: argparse.Namespace) -> None:
    """Scores on the device against the CPU's fp32 scores of the same pairs and weights (real
    photographs): fp32 with TF32 off is held to 1e-5 relative; the others are measured."""
    device = start(args)
    model = extractor()
    pairs, _ = precision.photo_pairs(
        args.agreement_side, precision.PHOTOS[:4], precision.DISTORTIONS, (0.25, 1.0)
    )
    started = time.perf_counter()
    cpu = precision.score_all(Scorer(runner_for(model, torch.device("cpu"), "fp32")), pairs, 8)
    emit(
        {
            "what": "cpu reference",
            "pairs": len(pairs),
            "side": args.agreement_side,
            "seconds": round(time.perf_counter() - started, 1),
        }
    )
    for mode in ("fp32", "fp32+tf32", "bf16", "fp16"):
        if device.type != "cuda" and mode != "fp32":
            continue
        runner = runner_for(model, device, mode)
        scores = precision.score_all(Scorer(runner), pairs, 16)
        _, data = precision.deviation_rows(cpu, scores)
        worst = max(data[name]["max"] for name in data)
        row: dict[str, Any] = {"mode": mode, **math_of(runner), "max_rel": worst}
        row.update({f"{n}_{k}": v for n, d in data.items() for k, v in d.items()})
        row["identical_exact"] = precision.identical_exact(scores[-1])
        if mode == "fp32":
            row["within_1e-5"] = worst <= 1e-5
        emit(row)


# -- throughput by batch size ------------------------------------------------------------------


def sweep(args: argparse.Namespace) -> None:
    """``Scorer.score`` and the bare forward pass on the same rows, pairs/s by batch size, per
    side and mode (eager), and the peak memory."""
    device = start(args)
    model = extractor()
    for side in args.sides:
        pool = distinct_pairs(side, max(args.batch_sizes))
        for mode in args.modes:
            runner = runner_for(model, device, mode)
            scorer = Scorer(runner)
            for batch in args.batch_sizes:
                row = {"side": side, "mode": mode, "batch": batch, **math_of(runner)}
                row.update(_rates(runner, scorer, pool[:batch], device))
                emit(row)
                if row["status"] == "OOM":
                    break


def compiled(args: argparse.Namespace) -> None:
    """bf16 with compiled kernels at the first side: the warm-up (compile) time, then pairs/s
    by batch size up to ``COMPILED_MAX_BATCH``."""
    device = start(args)
    side = args.sides[0]
    sizes = [b for b in args.batch_sizes if b <= COMPILED_MAX_BATCH]
    runner = runner_for(extractor(), device, "bf16", compile_model=True)
    started = time.monotonic()
    runner.warm_up([(side, side)], max(sizes))
    emit(
        {
            "what": "compile",
            "side": side,
            "rows": f"1..{2 * max(sizes)}",
            "seconds": round(time.monotonic() - started, 1),
        }
    )
    scorer = Scorer(runner)
    pool = distinct_pairs(side, max(sizes))
    for batch in sizes:
        row = {"side": side, "mode": "bf16 compiled", "batch": batch, **math_of(runner)}
        row.update(_rates(runner, scorer, pool[:batch], device))
        emit(row)


def _rates(
    runner: ModelRunner, scorer: Scorer, pairs: list[PairRequest], device: torch.device
) -> dict[str, Any]:
    n = len(pairs)
    cuda = device.type == "cuda"
    try:
        if cuda:
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats(device)
        seconds = median_seconds(partial(scorer.score, pairs), repeats=5, device=device)
        peak = torch.cuda.max_memory_allocated(device) if cuda else 0
        images = runner.upload([p.reference for p in pairs], [p.candidate for p in pairs])
        bare = median_seconds(partial(runner.forward, images), repeats=5, device=device)
    except torch.OutOfMemoryError:
        torch.cuda.empty_cache()
        return {"status": "OOM"}
    return {
        "status": "ok",
        "pairs_per_s": round(n / seconds, 1),
        "ms_per_batch": round(seconds * 1000, 2),
        "bare_pairs_per_s": round(n / bare, 1),
        "share_of_bare": round(bare / seconds, 3),
        "peak_gib": round(peak / 2**30, 2),
    }


# -- cuDNN autotuning --------------------------------------------------------------------------


def cudnn(args: argparse.Namespace) -> None:
    """``cudnn.benchmark`` off, then on, over the same stream of aspect-ratio batches: first
    sight of a shape (autotuning) against repeat visits."""
    device = start(args)
    model = extractor()
    shapes = [
        (max(16, round(w * args.cudnn_scale)), max(16, round(h * args.cudnn_scale)))
        for w, h in ASPECT_SHAPES
    ]
    stream: list[list[PairRequest]] = []
    for visit in range(args.cudnn_visits):
        for width, height in shapes:
            crop = (slice(None), slice(0, height), slice(0, width))
            batch = distinct_pairs(max(width, height), args.cudnn_batch, visit * args.cudnn_batch)
            stream.append([PairRequest(p.reference[crop], p.candidate[crop]) for p in batch])
    for on in (False, True):
        if device.type == "cuda":
            configure_cuda(cudnn_benchmark=on)
        scorer = Scorer(runner_for(model, device, "fp32"))
        seconds = []
        for pairs in stream:
            started = time.perf_counter()
            scorer.score(pairs)
            seconds.append(time.perf_counter() - started)
        first, repeat = seconds[: len(shapes)], seconds[len(shapes) :]
        emit(
            {
                "cudnn_benchmark": on,
                "shapes": len(shapes),
                "batch": args.cudnn_batch,
                **math_of(scorer.runner),
                "first_visit_ms_median": round(1000 * statistics.median(first), 1),
                "first_visit_ms_max": round(1000 * max(first), 1),
                "repeat_ms_median": round(1000 * statistics.median(repeat), 1) if repeat else None,
                "total_s": round(sum(seconds), 2),
            }
        )


def positive_ints(text: str) -> list[int]:
    return [int(part) for part in text.split(",") if part]


def modes(text: str) -> Sequence[str]:
    chosen = [part for part in text.split(",") if part]
    unknown = [m for m in chosen if m not in MODES]
    if unknown:
        raise argparse.ArgumentTypeError(f"unknown modes {unknown}; choose from {list(MODES)}")
    return chosen
