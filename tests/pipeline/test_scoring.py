"""The batch worker's scoring stage: a sticky device error becomes ``DeviceFailed`` (reported
once), any other error stays what it was, and the memory gauges follow every batch."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import pytest
import torch

from app.errors import DeviceFailed
from app.models.vgg import VGGFeatures
from app.observability import Metrics
from app.pipeline.scoring import ScoringStage
from app.scoring import PairRequest, PairScores, Scorer
from app.scoring.device import MemoryStats
from tests.support.faulty_gpu import ILLEGAL_ACCESS
from tests.support.models import cpu_runner


class Breaking(Scorer):
    """Scores for real until ``error`` is set; then fails when started or when collected."""

    error: BaseException | None = None
    when = "start"

    def launch(self, pairs: Sequence[PairRequest]) -> Callable[[], list[PairScores]]:
        if self.error is not None and self.when == "start":
            raise self.error
        scores = super().launch(pairs)
        if self.error is None:
            return scores

        def fail() -> list[PairScores]:
            assert self.error is not None
            raise self.error

        return fail


def pair() -> list[PairRequest]:
    image = torch.rand(3, 24, 24, generator=torch.Generator().manual_seed(0))
    return [PairRequest(image, image.flip(-1))]


@pytest.mark.parametrize("when", ["start", "collect"])
def test_a_sticky_device_error_fails_every_batch_with_device_failed_reported_once(
    extractor: VGGFeatures, when: str
) -> None:
    scorer = Breaking(cpu_runner(extractor))
    failures: list[DeviceFailed] = []
    stage = ScoringStage(scorer, on_device_failure=failures.append)
    assert stage.score(pair())[0].vgg is not None
    scorer.error, scorer.when = torch.AcceleratorError(ILLEGAL_ACCESS), when
    for _ in range(3):
        with pytest.raises(DeviceFailed) as caught:
            stage.score(pair())
        assert isinstance(caught.value.__cause__, torch.AcceleratorError)
        detail = str(caught.value)
        assert "the GPU failed (CUDA error: an illegal memory access was encountered)" in detail
        assert "restarted" in detail and "\n" not in detail
    assert len(failures) == 1 and stage.device_failure is failures[0]


@pytest.mark.parametrize(
    "error",
    [
        RuntimeError("cuDNN error: CUDNN_STATUS_EXECUTION_FAILED"),
        torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB"),
        ValueError("a batch must hold one tensor shape"),
    ],
)
def test_other_errors_stay_what_they_were(extractor: VGGFeatures, error: BaseException) -> None:
    scorer = Breaking(cpu_runner(extractor))
    scorer.error = error
    failures: list[DeviceFailed] = []
    stage = ScoringStage(scorer, on_device_failure=failures.append)
    with pytest.raises(type(error)):
        stage.score(pair())
    assert failures == [] and stage.device_failure is None


@pytest.mark.parametrize("when", ["start", "collect", None])
def test_memory_is_reported_after_every_batch(
    extractor: VGGFeatures, monkeypatch: pytest.MonkeyPatch, when: str | None
) -> None:
    runner = cpu_runner(extractor)
    monkeypatch.setattr(runner, "memory", lambda: MemoryStats(1, 2, 3))
    scorer = Breaking(runner)
    if when is not None:
        scorer.error, scorer.when = torch.AcceleratorError(ILLEGAL_ACCESS), when
    metrics = Metrics()
    stage = ScoringStage(scorer, metrics)
    try:
        stage.score(pair())
    except DeviceFailed:
        assert when is not None
    sample = metrics.registry.get_sample_value
    assert sample("simscore_gpu_memory_allocated_bytes") == 1
    assert sample("simscore_gpu_memory_peak_bytes") == 3
