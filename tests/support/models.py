"""The model pieces tests build directly (most tests go through the app instead)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch

from app.models.vgg import VGGFeatures
from app.scoring import ModelRunner, PairRequest, PairScores, Scorer


def cpu_runner(extractor: VGGFeatures, **options: Any) -> ModelRunner:
    """A ``ModelRunner`` on the CPU (fp32, channels-last unless told otherwise)."""
    return ModelRunner(extractor, device=torch.device("cpu"), **options)


ScoreFn = Callable[[Sequence[PairRequest]], list[PairScores]]


def intercept_scoring(scorer: Scorer, wrap: Callable[[ScoreFn], ScoreFn]) -> None:
    """Put ``wrap(score)`` in front of a live scorer, where ``score`` scores pairs for real:
    what the batch worker starts (``Scorer.launch``) then runs ``wrap(score)`` at once."""
    launch = scorer.launch
    wrapped = wrap(lambda pairs: launch(pairs)())

    def intercepted(pairs: Sequence[PairRequest]) -> Callable[[], list[PairScores]]:
        scores = wrapped(pairs)
        return lambda: scores

    scorer.launch = intercepted  # type: ignore[method-assign]
