"""The batch and score stages joined: ``ScoringQueue`` puts pairs in the batcher's queue, and the
batch worker runs each batch through ``ScoringStage`` (``app.pipeline.scoring``: the scorer, the
device's memory after each batch, sticky device errors), started on the device and then
collected, so that a full next batch can be started in between (``SIMSCORE_OVERLAP_BATCHES``).

A batch is bounded by pairs (``SIMSCORE_MAX_BATCH_SIZE``) and by the image pixels its forward
pass takes (``SIMSCORE_MAX_BATCH_PIXELS``, ``app.scoring.activations``): each pair costs its
reference's and its candidate's pixels, and a pair over the budget is scored alone.

With tracing on, each pair carries its ``queue`` and ``compute`` spans through the batcher and
each batch has its ``batch`` span (``app.pipeline.spans``).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence

from app.batching import Batcher, Outcome
from app.config import Settings
from app.errors import DeviceFailed, OutOfMemory
from app.models.registry import networks_for
from app.pipeline.observer import PipelineObserver
from app.pipeline.scoring import ScoringStage
from app.pipeline.spans import BatchSpans
from app.pipeline.types import default_max_wait_ms
from app.scoring import PairRequest, PairScores, Scorer, is_out_of_memory
from app.scoring.activations import batch_pixels
from app.scoring.device import MemoryStats
from app.tracing import Tracing
from app.vocabulary import MAP_SCORES


def pair_pixels(pair: PairRequest) -> int:
    """A pair's share of a forward pass's pixels (``SIMSCORE_MAX_BATCH_PIXELS``): its reference's
    rows and its candidate's, once per network its scores need (the networks run one after
    another, but each one's reference taps stay until the batch is scored; a pair of pixel
    scores alone counts once). A reference shared with other pairs, or cached, takes fewer, and
    AlexNet far less than VGG19: the budget errs on the safe side."""
    _, height, width = pair.shape
    drawn = {MAP_SCORES[pair.map_kind]} if pair.map_kind is not None else set()
    return 2 * height * width * max(1, len(networks_for(pair.scores | drawn)))


def single_pair_out_of_memory(max_batch_pixels: int) -> OutOfMemory:
    return OutOfMemory(
        "out of memory scoring a single pair (pairs over "
        f"SIMSCORE_MAX_BATCH_PIXELS={max_batch_pixels} are already scored alone); "
        "send smaller images or lower SIMSCORE_MAX_SIDE"
    )


class ScoringQueue:
    """Pairs in, each pair's ``Outcome`` out (see the module docstring)."""

    def __init__(
        self,
        settings: Settings,
        scorer: Scorer,
        observer: PipelineObserver | None = None,
        on_device_failure: Callable[[DeviceFailed], None] | None = None,
        tracing: Tracing | None = None,
    ) -> None:
        self.settings = settings
        self.scorer = scorer
        self.scoring = ScoringStage(scorer, observer, on_device_failure)
        device = scorer.runner.device
        self.max_batch_pixels = batch_pixels(settings.max_batch_pixels, device, settings.precision)
        self._spans = None
        if tracing is not None and tracing.enabled:
            runner = scorer.runner
            self._spans = BatchSpans(tracing, device=str(runner.device), precision=runner.precision)
        self.batcher: Batcher[PairRequest, PairScores] = Batcher(
            self.scoring.score,
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
            launcher=self.scoring.launch if scorer.runner.overlap else None,
            tracer=self._spans,
        )

    @property
    def alive(self) -> bool:
        return self.batcher.alive

    @property
    def healthy(self) -> bool:
        return self.batcher.healthy

    def start(self) -> None:
        self.batcher.start()

    async def warm_up(self) -> None:
        """Warm up (and compile) the configured shapes on the batch worker's thread."""
        shapes = self.settings.warmup_shapes
        if shapes:
            batch, pixels = self.settings.max_batch_size, self.max_batch_pixels
            await self.batcher.call(lambda: self.scorer.runner.warm_up(shapes, batch, pixels))

    def submit_many(
        self, pairs: Sequence[PairRequest], *, deadline: float
    ) -> list[Awaitable[Outcome[PairScores]]]:
        if self._spans is None:
            return list(self.batcher.submit_many(pairs, deadline=deadline))
        queued = self._spans.queued(pairs)
        try:
            answers = self.batcher.submit_many(pairs, deadline=deadline, contexts=queued)
        except BaseException as exc:  # refused (queue full, stopping): the spans end here
            for span in queued:
                span.left(exc)
            raise
        for answer, span in zip(answers, queued, strict=True):
            answer.add_done_callback(span.settle)
        return list(answers)

    def memory(self) -> MemoryStats:
        return self.scorer.runner.memory()

    def close(self) -> None:
        self.batcher.close()
