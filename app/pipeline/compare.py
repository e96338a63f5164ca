"""From uploaded bytes to scores and maps: decode on a bounded thread pool, queue, score.

``ComparePipeline`` owns the decode threads, the batcher and the scorer; the HTTP routes and
``simscore compare`` both call it, so the two cannot drift. It knows nothing of HTTP. Decoding
a request's images, and drawing its maps, always runs on the pool (``SIMSCORE_DECODE_THREADS``
at a time, each within the request's ``PixelBudget``; the requests in flight take turns:
``pool``); a request that is cancelled (client gone, deadline passed) cancels its decodes that
have not started.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from functools import partial
from typing import TypeVar

import torch

from app.batching import Batcher
from app.config import Settings
from app.difference_map import difference_map_png
from app.imaging import (
    PixelBudget,
    PreparedImage,
    prepare_candidate,
    prepare_mask,
    prepare_reference,
    quiet_pillow,
)
from app.metrics import composite
from app.pipeline.memory import DecodedMemory, Hold, held_or_refused
from app.pipeline.pool import FairPool
from app.pipeline.types import (
    CompareOptions,
    Comparison,
    PipelineObserver,
    comparison,
    default_max_wait_ms,
    pair_pixels,
    scored_pair,
    single_pair_out_of_memory,
)
from app.scoring import ModelInfo, PairRequest, PairScores, Scorer, is_out_of_memory
from app.scoring.activations import batch_pixels
from app.scoring.device import MemoryStats
from app.scoring.references import reference_key
from app.vocabulary import MapKind, preprocessing_tag

R = TypeVar("R")


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
        self._decode_pool = FairPool(settings.decode_threads, "simscore-decode")
        device = scorer.runner.device
        self.max_batch_pixels = batch_pixels(settings.max_batch_pixels, device, settings.precision)
        self.batcher: Batcher[PairRequest, PairScores] = Batcher(
            self._score_batch,
            group_key=lambda pair: pair.shape,
            max_batch_size=settings.max_batch_size,
            cost=pair_pixels,
            max_batch_cost=self.max_batch_pixels,
            max_wait_s=default_max_wait_ms(settings, device) / 1000,
            queue_size=settings.queue_size,
            is_resource_exhausted=is_out_of_memory,
            on_resource_exhausted=scorer.release_memory,
            exhausted_error=lambda: single_pair_out_of_memory(self.max_batch_pixels),
            unhealthy_after=settings.unhealthy_after_failures,
            observer=observer,
            launcher=self._launch_batch if scorer.runner.overlap else None,
        )
        self._preprocessing = preprocessing_tag(settings.max_side)
        self._memory = DecodedMemory(settings.decoded_memory_bytes)

    def start(self) -> None:
        quiet_pillow()
        self.batcher.start()

    async def warm_up(self) -> None:
        """Warm up (and compile) the configured shapes on the batch worker's thread."""
        shapes = self.settings.warmup_shapes
        if shapes:
            batch, pixels = self.settings.max_batch_size, self.max_batch_pixels
            await self.batcher.call(lambda: self.scorer.runner.warm_up(shapes, batch, pixels))

    def close(self) -> None:
        self.batcher.close()
        self._decode_pool.shutdown()

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
        """Score one pair (within ``options.mask``, if given); raises a ``SimscoreError`` for
        anything the caller did wrong."""
        budget = budget or self.pixel_budget()
        started = time.monotonic()
        with self._memory.request() as hold:
            ref, key, region = await self._reference(reference, options, budget, hold)
            cand = await self._decode(
                budget, self._prepare_candidate, candidate, ref, options, budget
            )
            hold(cand.tensor)
            decode_ms = (time.monotonic() - started) * 1000
            pair = scored_pair(ref, cand, options, key, region)
            outcome = await self.batcher.submit(pair, deadline=deadline)
        return comparison(outcome, ref, cand, decode_ms, region)

    async def compare_many(
        self,
        reference: bytes,
        candidates: Sequence[bytes],
        options: CompareOptions,
        *,
        deadline: float,
        budget: PixelBudget | None = None,
    ) -> list[Comparison | BaseException]:
        """Score candidates against one reference (all within ``options.mask``, if given); each
        candidate fails alone (its item is the exception). The reference's or the mask's own
        failure, or a full queue, raises for the request."""
        budget = budget or self.pixel_budget()
        started = time.monotonic()
        with self._memory.request() as hold:
            ref, key, region = await self._reference(reference, options, budget, hold)
            decoded = [
                held_or_refused(item, hold)
                for item in await asyncio.gather(
                    *(
                        self._decode(budget, self._prepare_candidate, c, ref, options, budget)
                        for c in candidates
                    ),
                    return_exceptions=True,
                )
            ]
            decode_ms = (time.monotonic() - started) * 1000
            good = [(i, c) for i, c in enumerate(decoded) if isinstance(c, PreparedImage)]
            waits = self.batcher.submit_many(
                [scored_pair(ref, c, options, key, region) for _, c in good], deadline=deadline
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
                results.append(comparison(outcome, ref, item, decode_ms, region))
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
        """The ``kind`` heat map PNG of a pair decoded and sized (and masked) as ``compare``
        would."""
        budget = budget or self.pixel_budget()
        ref, _ = await self._decode(budget, self._prepare_reference, reference, budget)
        region = await self._region(
            ref, CompareOptions(frozenset({"mse"}), mask=options.mask), budget
        )
        cand = await self._decode(budget, self._prepare_candidate, candidate, ref, options, budget)
        return await self.render_map(ref, cand, kind, region, lane=budget)

    async def render_map(
        self,
        reference: PreparedImage,
        candidate: PreparedImage,
        kind: MapKind,
        mask: torch.Tensor | None = None,
        *,
        lane: object = None,
    ) -> bytes:
        """The heat map PNG of two prepared images (the candidate as scored: the reference's
        pixels outside ``mask``), drawn on the decode pool (in the request's ``lane``)."""
        lane = lane or object()
        return await self._decode(lane, _map_png, reference.tensor, candidate.tensor, kind, mask)

    def memory(self) -> MemoryStats:
        return self.scorer.runner.memory()

    async def _reference(
        self, data: bytes, options: CompareOptions, budget: PixelBudget, hold: Hold
    ) -> tuple[PreparedImage, str, torch.Tensor | None]:
        """The reference, its cache key and the request's mask, counted as held memory."""
        ref, key = await self._decode(budget, self._prepare_reference, data, budget)
        hold(ref.tensor)
        region = await self._region(ref, options, budget)
        if region is not None:
            hold(region)
        return ref, key, region

    async def _region(
        self, reference: PreparedImage, options: CompareOptions, budget: PixelBudget
    ) -> torch.Tensor | None:
        """The request's mask at the reference's compared size (None without one)."""
        if options.mask is None:
            return None
        return await self._decode(
            budget,
            partial(
                prepare_mask,
                max_pixels=self.settings.max_pixels,
                budget=budget,
                needs_ssim_centre="ssim" in options.metrics,
            ),
            options.mask,
            reference.size,
        )

    async def _decode(self, lane: object, fn: Callable[..., R], *args: object) -> R:
        """Run ``fn`` on a decode thread (the event loop never decodes), in its turn among the
        requests in flight: ``lane`` is the request's (its pixel budget stands for it)."""
        return await asyncio.wrap_future(self._decode_pool.submit(lane, fn, *args))

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
        return self._launch_batch(pairs)()

    def _launch_batch(self, pairs: Sequence[PairRequest]) -> Callable[[], list[PairScores]]:
        """Start scoring a batch; what waits for its scores. The device memory gauges are
        reported once the batch is done or has failed, wherever it failed."""
        try:
            scores = self.scorer.launch(pairs)
        except BaseException:
            self._report_memory()
            raise

        def collect() -> list[PairScores]:
            try:
                return scores()
            finally:
                self._report_memory()

        return collect

    def _report_memory(self) -> None:
        if self._observer:
            self._observer.device_memory(self.scorer.runner.memory())


def _map_png(
    reference: torch.Tensor, candidate: torch.Tensor, kind: MapKind, mask: torch.Tensor | None
) -> bytes:
    """The heat map of the pair as scored (on a decode thread: compositing is pixel work too)."""
    scored = candidate if mask is None else composite(reference, candidate, mask)
    return difference_map_png(reference, scored, kind)
