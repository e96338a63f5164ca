"""``bench/gpu.py``'s sections on the model and the scorer in this process (no server): each a
function of the parsed arguments that reports its rows with ``bench.sections.emit`` as it
measures them. Every row says which fp32 math its backbone ran (``tf32``): IEEE fp32 unless the
row's name says ``fp32+tf32``; the metrics always run in IEEE fp32 (``app.scoring.device``).
"""

from __future__ import annotations

import argparse
import asyncio
import copy
import importlib.util
import statistics
import sys
import threading
import time
from collections.abc import Sequence
from functools import partial
from typing import Any, cast

import torch

import app.scoring.runner as runner_module
from app.batching import Batcher
from app.cpus import available_cpus, cgroup_cpu_quota
from app.errors import OutOfMemory
from app.models.vgg import VGGFeatures
from app.models.weights import load_features
from app.scoring import ModelRunner, PairRequest, PairScores, Scorer
from app.scoring.device import configure_cuda, is_out_of_memory, tf32_enabled
from app.vocabulary import Precision
from bench import precision
from bench.common import distinct_pairs, median_seconds
from bench.sections import emit
from tests.support.images import photo

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
MODES = {
    "fp32": ("fp32", False),
    "fp32+tf32": ("fp32", True),
    "bf16": ("bf16", False),
    "fp16": ("fp16", False),
}
COMPILED_MAX_BATCH = 16  # the compiled sweep warms up (compiles) row counts 1 to 2 x this
WORKER = "bench-batch-worker"  # the batch worker thread's name, to read its CPU time
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


# -- the batch worker: overlap, its CPU time, out-of-memory splits -----------------------------


def overlap(args: argparse.Namespace) -> None:
    """A saturated batch worker without and with ``SIMSCORE_OVERLAP_BATCHES``, rounds
    interleaved: pairs/s, the ratio, and the worker thread's CPU time over the run."""
    device = start(args)
    model = extractor()
    for side in args.sides:
        for mode in ("bf16", "fp32"):
            scorers = {on: Scorer(runner_for(model, device, mode, overlap=on)) for on in (0, 1)}
            for batch in args.overlap_batch_sizes:
                pairs = distinct_pairs(side, batch * args.overlap_batches_per_run)
                runs: dict[int, list[tuple[float, float]]] = {0: [], 1: []}
                for _ in range(args.overlap_rounds):
                    for on, scorer in scorers.items():
                        runs[on].append(asyncio.run(_saturated(scorer, bool(on), pairs, batch)))
                off, on_ = (statistics.median(r for r, _ in runs[k]) for k in (0, 1))
                emit(
                    {
                        "side": side,
                        "mode": mode,
                        "batch": batch,
                        **math_of(scorers[1].runner),
                        "overlap_runs": scorers[1].runner.overlap,
                        "off_pairs_per_s": round(off, 1),
                        "on_pairs_per_s": round(on_, 1),
                        "on_over_off": round(on_ / off, 3),
                        "worker_cpu_share_off": round(statistics.median(c for _, c in runs[0]), 3),
                        "worker_cpu_share_on": round(statistics.median(c for _, c in runs[1]), 3),
                    }
                )


def worker_cpu(args: argparse.Namespace) -> None:
    """The batch worker's CPU time while the GPU computes, with the service's blocking CUDA
    events (their waits sleep) and with spinning ones: pairs/s and CPU seconds per wall
    second of the worker thread (1.0: a core kept busy)."""
    device = start(args)
    model = extractor()
    side, batch = args.sides[0], max(args.overlap_batch_sizes)
    pairs = distinct_pairs(side, batch * args.overlap_batches_per_run)
    scorer = Scorer(runner_for(model, device, "bf16"))
    for _ in range(args.overlap_rounds):
        for blocking in (True, False):
            runner_module.BLOCKING_EVENTS = blocking
            rate, cpu_share = asyncio.run(_saturated(scorer, False, pairs, batch))
            emit(
                {
                    "side": side,
                    "mode": "bf16",
                    "batch": batch,
                    "blocking_events": blocking,
                    "pairs_per_s": round(rate, 1),
                    "worker_cpu_share": round(cpu_share, 3),
                    **math_of(scorer.runner),
                }
            )
    runner_module.BLOCKING_EVENTS = True


async def _saturated(
    scorer: Scorer, overlapped: bool, pairs: list[PairRequest], batch: int
) -> tuple[float, float]:
    """Pairs/s of one batch worker given ``pairs`` all at once (after two warm-up batches), and
    the worker thread's CPU seconds per second over the timed part."""
    batcher: Batcher[PairRequest, PairScores] = Batcher(
        scorer.score,
        group_key=lambda pair: pair.shape,
        max_batch_size=batch,
        max_wait_s=0.0,
        queue_size=len(pairs),
        launcher=scorer.launch if overlapped else None,
        name=WORKER,
    )
    batcher.start()
    try:
        deadline = time.monotonic() + 600
        await asyncio.gather(*batcher.submit_many(pairs[: 2 * batch], deadline=deadline))
        cpu_before, started = _thread_cpu_s(WORKER), time.perf_counter()
        await asyncio.gather(*batcher.submit_many(pairs, deadline=deadline))
        wall = time.perf_counter() - started
        return len(pairs) / wall, (_thread_cpu_s(WORKER) - cpu_before) / wall
    finally:
        batcher.close()


def _thread_cpu_s(name: str) -> float:
    """CPU seconds of the live thread called ``name`` (its pthread CPU clock)."""
    for thread in threading.enumerate():
        if thread.name == name and thread.ident is not None:
            return time.clock_gettime(time.pthread_getcpuclockid(thread.ident))
    raise LookupError(f"no thread {name!r}")


def oom(args: argparse.Namespace) -> None:
    """The out-of-memory split: the process capped at ``--oom-cap-gib`` of device memory, a
    batch too large for it queued at once; the batcher splits it in halves until each part
    fits. Every pair must be answered, with the scores it gets alone."""
    device = start(args)
    if device.type != "cuda":
        emit({"status": "skipped: needs CUDA (a memory cap)"})
        return
    scorer = Scorer(runner_for(extractor(), device, "fp32"))
    pairs = distinct_pairs(args.oom_side, args.oom_pairs)
    alone = [scorer.score([pair])[0] for pair in pairs[:4]]
    torch.cuda.empty_cache()
    total = torch.cuda.get_device_properties(device).total_memory
    torch.cuda.set_per_process_memory_fraction(min(1.0, args.oom_cap_gib * 2**30 / total), device)
    splits = _Splits()
    outcomes = asyncio.run(_split_run(scorer, pairs, splits))
    answered = [o for o in outcomes if not isinstance(o, BaseException)]
    failed = [repr(o) for o in outcomes if isinstance(o, BaseException)]
    worst = max(
        (
            abs(getattr(o.value, n) - getattr(a, n)) / abs(getattr(a, n))
            for o, a in zip(outcomes[:4], alone, strict=True)
            if not isinstance(o, BaseException)
            for n in ("vgg", "style", "ssim", "mse")
        ),
        default=None,
    )
    emit(
        {
            "side": args.oom_side,
            "pairs": len(pairs),
            "cap_gib": args.oom_cap_gib,
            "oom_splits": len(splits.at),
            "split_at": splits.at,
            "batch_sizes": sorted({o.batch_size for o in answered}),
            "answered": len(answered),
            "failed": failed[:3],
            "max_rel_vs_alone": worst,
            "status": "ok" if not failed else "failed",
        }
    )


class _Splits:
    """A batch observer that keeps the sizes of the batches that ran out of memory."""

    def __init__(self) -> None:
        self.at: list[int] = []

    def batch_failed(self, items: int, exc: BaseException, *, exhausted: bool) -> None:
        if exhausted:
            self.at.append(items)

    def queue_depth(self, items: int) -> None:
        pass

    def queue_wait(self, seconds: float) -> None:
        pass

    def batch_done(self, items: int, seconds: float) -> None:
        pass


async def _split_run(scorer: Scorer, pairs: list[PairRequest], splits: _Splits) -> list[Any]:
    batcher: Batcher[PairRequest, PairScores] = Batcher(
        scorer.score,
        group_key=lambda pair: pair.shape,
        max_batch_size=len(pairs),
        max_wait_s=0.0,
        queue_size=len(pairs),
        is_resource_exhausted=is_out_of_memory,
        on_resource_exhausted=scorer.release_memory,
        exhausted_error=lambda: OutOfMemory("a single pair does not fit"),
        observer=splits,
    )
    batcher.start()
    try:
        waits = batcher.submit_many(pairs, deadline=time.monotonic() + 600)
        return list(await asyncio.gather(*waits, return_exceptions=True))
    finally:
        batcher.close()


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
