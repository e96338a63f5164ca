"""The verdict of each result and the summary of a batch, as the answers carry them (the
conditions themselves: ``app.verdicts``)."""

from __future__ import annotations

from collections.abc import Sequence

from pydantic import BaseModel, Field

from app.scoring import PairScores
from app.verdicts import Thresholds
from app.vocabulary import SCORE_NAMES


class Verdict(BaseModel):
    """The result checked against the request's thresholds (or SIMSCORE_THRESHOLDS)."""

    passed: bool = Field(description="Every condition held.", examples=[False])
    failed: list[str] = Field(
        description="The conditions that did not hold, in the order given, each in canonical "
        "form: the score's name in lower case, the operator and the bound as written, no spaces. "
        "Empty when passed.",
        examples=[["ssim>=0.92"]],
    )


class BatchSummary(BaseModel):
    """How many candidates of a batch passed, failed and could not be scored."""

    passed: int = Field(description="Candidates whose verdict passed.", examples=[2])
    failed: int = Field(description="Candidates whose verdict failed.", examples=[1])
    errors: int = Field(
        description="Candidates that could not be scored (an error item: no verdict).",
        examples=[1],
    )


def score_values(scores: PairScores) -> dict[str, float | None]:
    """Each score of the vocabulary by name, as computed (psnr infinite for identical images)."""
    return {name: getattr(scores, name, None) for name in SCORE_NAMES}


def verdict_out(scores: PairScores, thresholds: Thresholds | None) -> Verdict | None:
    if thresholds is None:
        return None
    verdict = thresholds.verdict(score_values(scores))
    return Verdict(passed=verdict.passed, failed=verdict.failed_texts)


def batch_summary(
    thresholds: Thresholds | None, verdicts: Sequence[Verdict | None], errors: int
) -> BatchSummary | None:
    """Passed, failed and errors of a batch from its scored results' verdicts and its count of
    error items; None without thresholds."""
    if thresholds is None:
        return None
    passed = sum(verdict is not None and verdict.passed for verdict in verdicts)
    return BatchSummary(passed=passed, failed=len(verdicts) - passed, errors=errors)
