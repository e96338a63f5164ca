"""The batch and score stages joined: ``ScoringQueue`` puts pairs in the batcher's queue, and the
batch worker scores each batch with the ``Scorer`` (started on the device, then collected, so a
full next batch can be started in between: ``SIMSCORE_OVERLAP_BATCHES``). The device's memory
is reported after each batch, wherever it failed. With tracing on, each pair carries its
``queue`` and ``compute`` spans through the batcher and each batch has its ``batch`` span
(``spans``)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence

from app.batching import Batcher, Outcome
from app.config import Settings
from app.errors import OutOfMemory
from app.pipeline.observer import PipelineObserver
from app.pipeline.spans import BatchSpans
from app.pipeline.types import default_max_wait_ms
from app.scoring import PairRequest, PairScores, Scorer, is_out_of_memory
from app.scoring.device import MemoryStats
from app.tracing import Tracing


class ScoringQueue:
    """Pairs in, each pair's ``Outcome`` out (see the module docstring)."""

    def __init__(
        self,
        settings: Settings,
        scorer: Scorer,
        observer: PipelineObserver | None = None,
        tracing: Tracing | None = None,
    ) -> None:
        self.settings = settings
        self.scorer = scorer
        self._observer = observer
        self._spans = None
        if tracing is not None and tracing.enabled:
            runner = scorer.runner
            self._spans = BatchSpans(tracing, device=str(runner.device), precision=runner.precision)
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
            launcher=self._launch_batch if scorer.runner.overlap else None,
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
            batch = self.settings.max_batch_size
            await self.batcher.call(lambda: self.scorer.runner.warm_up(shapes, batch))

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

    def _score_batch(self, pairs: Sequence[PairRequest]) -> list[PairScores]:
        return self._launch_batch(pairs)()

    def _launch_batch(self, pairs: Sequence[PairRequest]) -> Callable[[], list[PairScores]]:
        """Start scoring a batch; what waits for its scores."""
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
