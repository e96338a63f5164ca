"""From uploaded bytes to scores: decode in a thread pool, queue, score, time each step.

The web layer calls ``ComparePipeline``; this module owns the decode threads and the batcher,
and knows nothing of HTTP.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TypeVar

import torch

from app.batching import Batcher, Outcome
from app.config import Settings, SizePolicy
from app.errors import InvalidRequest, Overloaded
from app.imaging import PreparedImage, prepare_candidate, prepare_reference
from app.observability import Metrics
from app.reference_cache import reference_key
from app.scoring import (
    ALL_METRICS,
    METRIC_NAMES,
    ModelInfo,
    PairRequest,
    PairScores,
    Scorer,
    is_out_of_memory,
)

R = TypeVar("R")


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


def parse_metrics(text: str | None) -> frozenset[str]:
    """``"vgg,ssim"`` -> the set; ``None``, empty or no name at all (``","``) means every metric."""
    names = {part.strip().lower() for part in (text or "").split(",") if part.strip()}
    if not names:
        return ALL_METRICS
    unknown = sorted(names - ALL_METRICS)
    if unknown:
        raise InvalidRequest(
            f"unknown metric(s) {', '.join(unknown)}; choose from {', '.join(METRIC_NAMES)}"
        )
    return frozenset(names)


CPU_MAX_WAIT_MS = 20.0  # measured: see docs/benchmarks.md#batching-defaults
CUDA_MAX_WAIT_MS = 2.0  # not measured (no GPU): a fraction of a GPU batch's compute time


def default_max_wait_ms(settings: Settings, device: torch.device) -> float:
    """``SIMSCORE_MAX_WAIT_MS`` if set, else the default for the device."""
    if settings.max_wait_ms is not None:
        return settings.max_wait_ms
    return CUDA_MAX_WAIT_MS if device.type == "cuda" else CPU_MAX_WAIT_MS


class ComparePipeline:
    """Decode, batch and score pairs for one model copy."""

    def __init__(
        self, settings: Settings, scorer: Scorer, model: ModelInfo, metrics: Metrics
    ) -> None:
        self.settings = settings
        self.scorer = scorer
        self.model = model
        self.metrics = metrics
        self._decode_pool = ThreadPoolExecutor(
            settings.decode_threads, thread_name_prefix="simscore-decode"
        )
        self.batcher: Batcher[PairRequest, PairScores] = Batcher(
            self._score_batch,
            group_key=lambda pair: pair.shape,
            max_batch_size=settings.max_batch_size,
            max_wait_s=default_max_wait_ms(settings, scorer.device) / 1000,
            queue_size=settings.queue_size,
            is_resource_exhausted=is_out_of_memory,
            on_resource_exhausted=scorer.release_memory,
            metrics=metrics,
        )
        self._preprocessing = f"max_side={settings.max_side}"
        self._in_flight = 0

    def start(self) -> None:
        self.batcher.start()

    @contextlib.contextmanager
    def admission(self) -> Iterator[None]:
        """Hold one request slot while its uploads are read, decoded and scored.

        Bounds the memory that uploads in flight can take; called on the event loop only.
        """
        if self._in_flight >= self.settings.max_concurrent_requests:
            raise Overloaded(
                f"{self._in_flight} requests are already in flight "
                "(SIMSCORE_MAX_CONCURRENT_REQUESTS); retry after a short wait"
            )
        self._in_flight += 1
        try:
            yield
        finally:
            self._in_flight -= 1

    def close(self) -> None:
        self.batcher.close()
        self._decode_pool.shutdown(wait=False, cancel_futures=True)

    async def compare(
        self,
        reference: bytes,
        candidate: bytes,
        *,
        metrics: frozenset[str] = ALL_METRICS,
        size_policy: SizePolicy | None = None,
        deadline: float,
    ) -> Comparison:
        """Score one pair; raises a ``SimscoreError`` for anything the caller did wrong."""
        policy = size_policy or self.settings.default_size_policy
        started = time.monotonic()
        ref, key = await self._decode(self._prepare_reference, reference)
        cand = await self._decode(self._prepare_candidate, candidate, ref, policy)
        decode_ms = (time.monotonic() - started) * 1000
        outcome = await self.batcher.submit(
            PairRequest(ref.tensor, cand.tensor, metrics, key), deadline=deadline
        )
        return _comparison(outcome, ref, cand, decode_ms)

    async def compare_many(
        self,
        reference: bytes,
        candidates: Sequence[bytes],
        *,
        metrics: frozenset[str] = ALL_METRICS,
        size_policy: SizePolicy | None = None,
        deadline: float,
    ) -> list[Comparison | BaseException]:
        """Score candidates against one reference; each candidate fails alone (its item is the
        exception). The reference's own failure, or a full queue, raises for the request."""
        policy = size_policy or self.settings.default_size_policy
        started = time.monotonic()
        ref, key = await self._decode(self._prepare_reference, reference)
        decoded = await asyncio.gather(
            *(self._decode(self._prepare_candidate, c, ref, policy) for c in candidates),
            return_exceptions=True,
        )
        decode_ms = (time.monotonic() - started) * 1000
        results: list[Comparison | BaseException] = []
        good = [(i, c) for i, c in enumerate(decoded) if isinstance(c, PreparedImage)]
        waits = self.batcher.submit_many(
            [PairRequest(ref.tensor, c.tensor, metrics, key) for _, c in good], deadline=deadline
        )
        outcomes = dict(
            zip(
                (i for i, _ in good),
                await asyncio.gather(*waits, return_exceptions=True),
                strict=True,
            )
        )
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

    async def _decode(self, fn: Callable[..., R], *args: object) -> R:
        """Run ``fn`` on a decode thread: the event loop never decodes."""
        return await asyncio.get_running_loop().run_in_executor(self._decode_pool, fn, *args)

    def _prepare_reference(self, data: bytes) -> tuple[PreparedImage, str]:
        image = prepare_reference(
            data, max_pixels=self.settings.max_pixels, max_side=self.settings.max_side
        )
        return image, reference_key(image.tensor, self._preprocessing)

    def _prepare_candidate(
        self, data: bytes, reference: PreparedImage, policy: SizePolicy
    ) -> PreparedImage:
        return prepare_candidate(
            data,
            reference,
            max_pixels=self.settings.max_pixels,
            max_side=self.settings.max_side,
            size_policy=policy,
        )

    def _score_batch(self, pairs: Sequence[PairRequest]) -> list[PairScores]:
        scores = self.scorer.score(pairs)
        self.metrics.gpu_memory.set(self.scorer.memory_allocated_bytes())
        return scores


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
