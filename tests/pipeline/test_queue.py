"""The batch and score stages joined (``app.pipeline.queue.ScoringQueue``): device memory
reported after every batch, wherever it failed, and batches overlapped when the runner can."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import pytest
import torch

from app.config import Settings
from app.errors import DeviceFailed
from app.models.vgg import VGGFeatures
from app.observability import Metrics
from app.pipeline.queue import ScoringQueue
from app.scoring import PairRequest, PairScores, Scorer
from app.scoring.device import MemoryStats
from tests.support.models import cpu_runner


class FailingScorer(Scorer):
    """Fails when a batch starts, or when its scores are waited for (a sticky CUDA error
    surfaces at the first synchronisation)."""

    fail_when = "start"

    def launch(self, pairs: Sequence[PairRequest]) -> Callable[[], list[PairScores]]:
        if self.fail_when == "start":
            raise RuntimeError("CUDA error: an illegal memory access was encountered")

        def scores() -> list[PairScores]:
            raise RuntimeError("CUDA error: an illegal memory access was encountered")

        return scores


@pytest.mark.parametrize("fail_when", ["start", "collect"])
def test_memory_gauges_are_reported_after_a_failed_batch(
    make_settings: Callable[..., Settings],
    extractor: VGGFeatures,
    monkeypatch: pytest.MonkeyPatch,
    fail_when: str,
) -> None:
    runner = cpu_runner(extractor)
    monkeypatch.setattr(runner, "memory", lambda: MemoryStats(11, 22, 33))
    metrics = Metrics()
    scorer = FailingScorer(runner)
    scorer.fail_when = fail_when
    queue = ScoringQueue(make_settings(), scorer, metrics)
    image = torch.rand(3, 16, 16)
    try:
        with pytest.raises(DeviceFailed, match="illegal memory access"):
            queue.scoring.score([PairRequest(image, image.flip(-1))])
    finally:
        queue.close()
    registry = metrics.registry
    assert registry.get_sample_value("simscore_gpu_memory_allocated_bytes") == 11
    assert registry.get_sample_value("simscore_gpu_memory_reserved_bytes") == 22
    assert registry.get_sample_value("simscore_gpu_memory_peak_bytes") == 33


@pytest.mark.parametrize("overlap", [False, True])
def test_the_queue_overlaps_batches_when_its_runner_does(
    make_settings: Callable[..., Settings], extractor: VGGFeatures, overlap: bool
) -> None:
    """A runner overlaps only with pinned memory (CUDA); the queue's batcher then starts a
    full next batch before collecting the current one."""
    runner = cpu_runner(extractor, overlap=True)
    assert not runner.overlap  # a CPU: no pinned memory, nothing to overlap
    runner.overlap = overlap
    queue = ScoringQueue(make_settings(), Scorer(runner))
    try:
        assert queue.batcher.overlap is overlap
    finally:
        queue.close()
