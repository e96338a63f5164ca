"""The batch and score stages joined: ``ScoringQueue`` puts pairs in the batcher's queue, and the
batch worker runs each batch through ``ScoringStage`` (``app.pipeline.scoring``: the scorer, the
device's memory after each batch, sticky device errors), started on the device and then
collected, so that a full next batch can be started in between (``SIMSCORE_OVERLAP_BATCHES``)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence

from app.batching import Batcher, Outcome
from app.config import Settings
from app.errors import DeviceFailed, OutOfMemory
from app.pipeline.observer import PipelineObserver
from app.pipeline.scoring import ScoringStage
from app.pipeline.types import default_max_wait_ms
from app.scoring import PairRequest, PairScores, Scorer, is_out_of_memory
from app.scoring.device import MemoryStats


class ScoringQueue:
    """Pairs in, each pair's ``Outcome`` out (see the module docstring)."""

    def __init__(
        self,
        settings: Settings,
        scorer: Scorer,
        observer: PipelineObserver | None = None,
        on_device_failure: Callable[[DeviceFailed], None] | None = None,
    ) -> None:
        self.settings = settings
        self.scorer = scorer
        self.scoring = ScoringStage(scorer, observer, on_device_failure)
        self.batcher: Batcher[PairRequest, PairScores] = Batcher(
            self.scoring.score,
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
            launcher=self.scoring.launch if scorer.runner.overlap else None,
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
        return list(self.batcher.submit_many(pairs, deadline=deadline))

    def memory(self) -> MemoryStats:
        return self.scorer.runner.memory()

    def close(self) -> None:
        self.batcher.close()
