"""From uploaded bytes to scores and maps: decode on a bounded thread pool, queue, score.

``ComparePipeline`` owns the decode threads, the batcher and the scorer; the HTTP routes and
``simscore compare`` both call it, so the two cannot drift. It knows nothing of HTTP. Decoding
a request's images, and drawing its maps, always runs on the pool (``SIMSCORE_DECODE_THREADS``
at a time, each within the request's ``PixelBudget``); a request that is cancelled (client gone,
deadline passed) cancels its decodes that have not started.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Protocol, TypeVar

import torch

from app.batching import Batcher, BatchObserver, Outcome
from app.config import Settings
from app.difference_map import difference_map_png
from app.errors import OutOfMemory
from app.imaging import (
    PixelBudget,
    PreparedImage,
    prepare_candidate,
    prepare_reference,
    quiet_pillow,
)
from app.scoring import ModelInfo, PairRequest, PairScores, Scorer, is_out_of_memory
from app.scoring.device import MemoryStats
from app.scoring.references import reference_key
from app.vocabulary import ALL_SCORES, MapKind, ScoreName, SizePolicy, preprocessing_tag

R = TypeVar("R")

CPU_MAX_WAIT_MS = 20.0  # measured: see docs/benchmarks.md#batching-defaults
CUDA_MAX_WAIT_MS = 2.0  # not measured (no GPU): a fraction of a GPU batch's compute time


class PipelineObserver(BatchObserver, Protocol):
    """The batcher's reports plus the device's memory after each batch."""

    def device_memory(self, stats: MemoryStats) -> None: ...


@dataclass(frozen=True)
class CompareOptions:
    """What a request asks of each of its pairs."""

    metrics: frozenset[ScoreName] = ALL_SCORES
    size_policy: SizePolicy | None = None  # None: SIMSCORE_DEFAULT_SIZE_POLICY


@dataclass(frozen=True)
class Comparison:
    """One scored pair with what was compared and where the time went."""

    scores: PairScores
    reference: PreparedImage
    candidate: PreparedImage
    decode_ms: float
    queue_ms: float
    compute_ms: float
    batch_size: int


def default_max_wait_ms(settings: Settings, device: torch.device) -> float:
    """``SIMSCORE_MAX_WAIT_MS`` if set, else the default for the device."""
    if settings.max_wait_ms is not None:
        return settings.max_wait_ms
    return CUDA_MAX_WAIT_MS if device.type == "cuda" else CPU_MAX_WAIT_MS


class ComparePipeline:
    """Decode, batch and score pairs for one model copy."""

    def __init__(
        self,
        settings: Settings,
        scorer: Scorer,
        model: ModelInfo,
        observer: PipelineObserver | None = None,
    ) -> None:
        self.settings = settings
        self.scorer = scorer
        self.model = model
        self._observer = observer
        self._decode_pool = ThreadPoolExecutor(
            settings.decode_threads, thread_name_prefix="simscore-decode"
        )
        self.batcher: Batcher[PairRequest, PairScores] = Batcher(
            self._score_batch,
            group_key=lambda pair: pair.shape,
            max_batch_size=settings.max_batch_size,
            max_wait_s=default_max_wait_ms(settings, scorer.runner.device) / 1000,
            queue_size=settings.queue_size,
            is_resource_exhausted=is_out_of_memory,
            on_resource_exhausted=scorer.release_memory,
            exhausted_error=lambda: OutOfMemory(
                "out of memory scoring a single pair; send smaller images or lower "
                "SIMSCORE_MAX_SIDE"
            ),
            unhealthy_after=settings.unhealthy_after_failures,
            observer=observer,
        )
        self._preprocessing = preprocessing_tag(settings.max_side)

    def start(self) -> None:
        quiet_pillow()
        self.batcher.start()

    async def warm_up(self) -> None:
        """Warm up (and compile) the configured shapes on the batch worker's thread."""
        shapes = self.settings.warmup_shapes
        if shapes:
            batch = self.settings.max_batch_size
            await self.batcher.call(lambda: self.scorer.runner.warm_up(shapes, batch))

    def close(self) -> None:
        self.batcher.close()
        self._decode_pool.shutdown(wait=False, cancel_futures=True)

    def pixel_budget(self) -> PixelBudget:
        """A fresh ``SIMSCORE_MAX_REQUEST_PIXELS`` budget for one request."""
        return PixelBudget(self.settings.max_request_pixels)

    async def compare(
        self,
        reference: bytes,
        candidate: bytes,
        options: CompareOptions,
        *,
        deadline: float,
        budget: PixelBudget | None = None,
    ) -> Comparison:
        """Score one pair; raises a ``SimscoreError`` for anything the caller did wrong."""
        budget = budget or self.pixel_budget()
        started = time.monotonic()
        ref, key = await self._decode(self._prepare_reference, reference, budget)
        cand = await self._decode(self._prepare_candidate, candidate, ref, options, budget)
        decode_ms = (time.monotonic() - started) * 1000
        outcome = await self.batcher.submit(
            PairRequest(ref.tensor, cand.tensor, options.metrics, key), deadline=deadline
        )
        return _comparison(outcome, ref, cand, decode_ms)

    async def compare_many(
        self,
        reference: bytes,
        candidates: Sequence[bytes],
        options: CompareOptions,
        *,
        deadline: float,
        budget: PixelBudget | None = None,
    ) -> list[Comparison | BaseException]:
        """Score candidates against one reference; each candidate fails alone (its item is the
        exception). The reference's own failure, or a full queue, raises for the request."""
        budget = budget or self.pixel_budget()
        started = time.monotonic()
        ref, key = await self._decode(self._prepare_reference, reference, budget)
        decoded = await asyncio.gather(
            *(self._decode(self._prepare_candidate, c, ref, options, budget) for c in candidates),
            return_exceptions=True,
        )
        decode_ms = (time.monotonic() - started) * 1000
        good = [(i, c) for i, c in enumerate(decoded) if isinstance(c, PreparedImage)]
        waits = self.batcher.submit_many(
            [PairRequest(ref.tensor, c.tensor, options.metrics, key) for _, c in good],
            deadline=deadline,
        )
        scored = await asyncio.gather(*waits, return_exceptions=True)
        outcomes = dict(zip((i for i, _ in good), scored, strict=True))
        results: list[Comparison | BaseException] = []
        for i, item in enumerate(decoded):
            if not isinstance(item, PreparedImage):
                results.append(item)
                continue
            outcome = outcomes[i]
            if isinstance(outcome, BaseException):
                results.append(outcome)
            else:
                results.append(_comparison(outcome, ref, item, decode_ms))
        return results

    async def difference_map(
        self,
        reference: bytes,
        candidate: bytes,
        kind: MapKind,
        options: CompareOptions,
        *,
        budget: PixelBudget | None = None,
    ) -> bytes:
        """The ``kind`` heat map PNG of a pair decoded and sized as ``compare`` would."""
        budget = budget or self.pixel_budget()
        ref, _ = await self._decode(self._prepare_reference, reference, budget)
        cand = await self._decode(self._prepare_candidate, candidate, ref, options, budget)
        return await self.render_map(ref, cand, kind)

    async def render_map(
        self, reference: PreparedImage, candidate: PreparedImage, kind: MapKind
    ) -> bytes:
        """The heat map PNG of two prepared images, drawn on the decode pool."""
        return await self._decode(difference_map_png, reference.tensor, candidate.tensor, kind)

    def memory(self) -> MemoryStats:
        return self.scorer.runner.memory()

    async def _decode(self, fn: Callable[..., R], *args: object) -> R:
        """Run ``fn`` on a decode thread: the event loop never decodes."""
        return await asyncio.get_running_loop().run_in_executor(self._decode_pool, fn, *args)

    def _prepare_reference(self, data: bytes, budget: PixelBudget) -> tuple[PreparedImage, str]:
        image = prepare_reference(
            data,
            max_pixels=self.settings.max_pixels,
            max_side=self.settings.max_side,
            budget=budget,
        )
        return image, reference_key(image.tensor, self._preprocessing)

    def _prepare_candidate(
        self, data: bytes, reference: PreparedImage, options: CompareOptions, budget: PixelBudget
    ) -> PreparedImage:
        return prepare_candidate(
            data,
            reference,
            max_pixels=self.settings.max_pixels,
            size_policy=options.size_policy or self.settings.default_size_policy,
            budget=budget,
        )

    def _score_batch(self, pairs: Sequence[PairRequest]) -> list[PairScores]:
        try:
            return self.scorer.score(pairs)
        finally:
            if self._observer:
                self._observer.device_memory(self.scorer.runner.memory())


def _comparison(
    outcome: Outcome[PairScores], ref: PreparedImage, cand: PreparedImage, decode_ms: float
) -> Comparison:
    return Comparison(
        scores=outcome.value,
        reference=ref,
        candidate=cand,
        decode_ms=decode_ms,
        queue_ms=outcome.queue_wait_s * 1000,
        compute_ms=outcome.compute_s * 1000,
        batch_size=outcome.batch_size,
    )
