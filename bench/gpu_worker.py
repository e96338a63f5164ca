"""``bench/gpu.py``'s sections on the batch worker (``app.batching``) in this process: overlap on
and off, the worker thread's CPU time with blocking and spinning CUDA events, and the
out-of-memory split under a memory cap. Rows go out with ``bench.sections.emit``."""

from __future__ import annotations

import argparse
import asyncio
import statistics
import threading
import time
from typing import Any

import torch

import app.scoring.runner as runner_module
from app.batching import Batcher
from app.errors import OutOfMemory
from app.scoring import PairRequest, PairScores, Scorer
from app.scoring.device import is_out_of_memory
from bench.common import distinct_pairs
from bench.gpu_model import extractor, math_of, runner_for, start
from bench.sections import emit

WORKER = "bench-batch-worker"  # the batch worker thread's name, to read its CPU time


def overlap(args: argparse.Namespace) -> None:
    """A saturated batch worker without and with ``SIMSCORE_OVERLAP_BATCHES``, rounds
    interleaved: pairs/s, the ratio, and the worker thread's CPU time over the run."""
    device = start(args)
    model = extractor()
    for side in args.overlap_sides:
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
