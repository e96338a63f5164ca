"""What the scorer takes and gives: pairs in, scores out, and what produced them."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from app.vocabulary import ALL_SCORES, SCORE_NAMES, TAP_NAMES, ScoreName


@dataclass(frozen=True)
class PairRequest:
    """One pair to score: two ``(3, H, W)`` float tensors in [0, 1] of one shape, and optionally
    a region of interest ``mask`` ``(1, H, W)`` (bool; the candidate already equals the
    reference outside it: ``app.metrics.composite``)."""

    reference: torch.Tensor
    candidate: torch.Tensor
    scores: frozenset[ScoreName] = ALL_SCORES
    reference_key: str | None = None  # see app.scoring.references.reference_key
    mask: torch.Tensor | None = None

    def __post_init__(self) -> None:
        if self.reference.shape != self.candidate.shape or self.reference.dim() != 3:
            raise ValueError(
                f"reference {tuple(self.reference.shape)} and candidate "
                f"{tuple(self.candidate.shape)} must both be (3, H, W) of one shape"
            )
        if self.mask is not None and tuple(self.mask.shape) != (1, *self.reference.shape[1:]):
            raise ValueError(
                f"mask {tuple(self.mask.shape)} must be (1, H, W) for images "
                f"{tuple(self.reference.shape)}"
            )
        if not self.scores or not self.scores <= ALL_SCORES:
            raise ValueError(f"scores must be a non-empty subset of {SCORE_NAMES}")

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.reference.shape)

    @property
    def identical(self) -> bool:
        """The two images are equal pixel for pixel."""
        return torch.equal(self.reference, self.candidate)


@dataclass(frozen=True)
class PairScores:
    """Scores of one pair; a score not asked for is ``None``. ``psnr`` is ``inf`` for equal
    images."""

    vgg: float | None = None
    style: float | None = None
    ssim: float | None = None
    mse: float | None = None
    psnr: float | None = None
    vgg_layers: dict[str, float] | None = None
    style_layers: dict[str, float] | None = None
    reference_cached: bool = False


IDENTICAL: dict[ScoreName, float] = {
    "vgg": 0.0,
    "style": 0.0,
    "ssim": 1.0,
    "mse": 0.0,
    "psnr": math.inf,
}


def identical_scores(scores: frozenset[ScoreName]) -> PairScores:
    """The scores of two equal images, by definition of each metric (exact on every CPU and in
    every batch: nothing is computed)."""

    def value(name: ScoreName) -> float | None:
        return IDENTICAL[name] if name in scores else None

    def zeros(name: ScoreName) -> dict[str, float] | None:
        return {tap: 0.0 for tap in TAP_NAMES} if name in scores else None

    return PairScores(
        vgg=value("vgg"),
        style=value("style"),
        ssim=value("ssim"),
        mse=value("mse"),
        psnr=value("psnr"),
        vgg_layers=zeros("vgg"),
        style_layers=zeros("style"),
    )


@dataclass(frozen=True)
class ModelInfo:
    """What produced the scores, for every result's ``model`` field."""

    name: str
    weights: str
    sha256: str
    device: str
    precision: str
