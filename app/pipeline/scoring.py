"""What the batch worker runs for a batch: the scorer, the device memory gauges after each batch,
and sticky device errors turned into ``DeviceFailed``.

A sticky CUDA error (``is_device_failure``: an illegal address, a device-side assert, an ECC
error...) leaves the process's CUDA context unusable: every later batch fails too. The first one
is reported to ``on_device_failure`` (the service then fails liveness and exits, so that the
orchestrator starts a fresh process); this batch's pairs, and every later one's, fail with
``DeviceFailed`` (503) instead of an internal error.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from app.errors import DeviceFailed
from app.pipeline.observer import PipelineObserver
from app.scoring import PairRequest, PairScores, Scorer
from app.scoring.device import is_device_failure


class ScoringStage:
    """``score`` and ``launch`` for the batcher (see the module docstring)."""

    def __init__(
        self,
        scorer: Scorer,
        observer: PipelineObserver | None = None,
        on_device_failure: Callable[[DeviceFailed], None] | None = None,
    ) -> None:
        self.scorer = scorer
        self._observer = observer
        self._on_device_failure = on_device_failure
        self.device_failure: DeviceFailed | None = None

    def score(self, pairs: Sequence[PairRequest]) -> list[PairScores]:
        return self.launch(pairs)()

    def launch(self, pairs: Sequence[PairRequest]) -> Callable[[], list[PairScores]]:
        """Start scoring a batch; what waits for its scores. The device memory gauges are
        reported once the batch is done or has failed, wherever it failed."""
        try:
            scores = self.scorer.launch(pairs)
        except BaseException as exc:
            self._report_memory()
            self._raise_device_failure(exc)
            raise

        def collect() -> list[PairScores]:
            try:
                return scores()
            except BaseException as exc:
                self._raise_device_failure(exc)
                raise
            finally:
                self._report_memory()

        return collect

    def _raise_device_failure(self, exc: BaseException) -> None:
        """Raise ``DeviceFailed`` from ``exc`` for a sticky device error (reporting the first one
        to ``on_device_failure``); return for any other error."""
        if not is_device_failure(exc):
            return
        failure = self.device_failure
        if failure is None:
            cause = str(exc).strip().splitlines()[0]
            failure = self.device_failure = DeviceFailed(
                f"the GPU failed ({cause}); this server process exits to be restarted: "
                "retry shortly"
            )
            if self._on_device_failure is not None:
                self._on_device_failure(failure)
        raise DeviceFailed(str(failure)) from exc

    def _report_memory(self) -> None:
        if self._observer:
            self._observer.device_memory(self.scorer.runner.memory())
