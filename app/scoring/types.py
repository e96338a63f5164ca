"""What the scorer takes and gives: pairs in, scores out, and what produced them."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import torch

from app.scores.flip_viewing import DEFAULT_PPD
from app.vocabulary import (
    ALL_SCORES,
    DEFAULT_SCORES,
    MAP_SCORES,
    SCORE_NAMES,
    TAP_NAMES,
    MapKind,
    ScoreName,
)


@dataclass(frozen=True)
class PairRequest:
    """One pair to score: two ``(3, H, W)`` float tensors in [0, 1] of one shape, and optionally
    a region of interest ``mask`` ``(1, H, W)`` (bool; the candidate already equals the
    reference outside it: ``app.scores.composite``) and a map drawn by a score's network
    (``map_kind``, one of ``MAP_SCORES``: returned with the scores as ``PairScores.map``)."""

    reference: torch.Tensor
    candidate: torch.Tensor
    scores: frozenset[ScoreName] = DEFAULT_SCORES
    reference_key: str | None = None  # see app.scoring.references.reference_key
    mask: torch.Tensor | None = None
    map_kind: MapKind | None = None
    ppd: float = DEFAULT_PPD  # FLIP's viewing conditions (app.scores.flip_viewing)

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
        if self.map_kind is not None and self.map_kind not in MAP_SCORES:
            raise ValueError(f"the scorer draws only the maps {', '.join(MAP_SCORES)}")

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
    images. ``map``: the map asked for with ``PairRequest.map_kind``, ``(H, W)`` float32 on the
    host."""

    vgg: float | None = None
    style: float | None = None
    ssim: float | None = None
    mse: float | None = None
    psnr: float | None = None
    lpips: float | None = None
    lpips_vgg: float | None = None
    dists: float | None = None
    flip: float | None = None
    ms_ssim: float | None = None
    vgg_layers: dict[str, float] | None = None
    style_layers: dict[str, float] | None = None
    reference_cached: bool = False
    map: torch.Tensor | None = field(default=None, compare=False, repr=False)

    def value(self, name: ScoreName) -> float | None:
        """The score called ``name`` (``None``: not asked for)."""
        found: float | None = getattr(self, name)
        return found


IDENTICAL: dict[ScoreName, float] = {
    "vgg": 0.0,
    "style": 0.0,
    "ssim": 1.0,
    "mse": 0.0,
    "psnr": math.inf,
    "lpips": 0.0,
    "lpips_vgg": 0.0,
    "dists": 0.0,
    "flip": 0.0,
    "ms_ssim": 1.0,
}


def identical_scores(pair: PairRequest) -> PairScores:
    """The scores of two equal images, by definition of each metric (exact on every CPU and in
    every batch: nothing is computed); a map asked for is all zeros (no difference anywhere)."""
    scores = pair.scores

    def zeros(name: ScoreName) -> dict[str, float] | None:
        return {tap: 0.0 for tap in TAP_NAMES} if name in scores else None

    values: dict[str, Any] = {name: IDENTICAL[name] for name in SCORE_NAMES if name in scores}
    shape = pair.shape[1:]
    shown = None if pair.map_kind is None else torch.zeros(shape, dtype=torch.float32, device="cpu")
    return PairScores(**values, vgg_layers=zeros("vgg"), style_layers=zeros("style"), map=shown)


@dataclass(frozen=True)
class BackboneWeights:
    """Where a backbone's weights came from: ``imagenet``, ``file`` or ``random``, and the first
    12 hex digits of their sha256."""

    weights: str
    sha256: str


@dataclass(frozen=True)
class ModelInfo:
    """What produced the scores, for every result's ``model`` field: VGG19 (``name``,
    ``weights``, ``sha256``) and the other backbones this server loaded (``backbones``)."""

    name: str
    weights: str
    sha256: str
    device: str
    precision: str
    backbones: Mapping[str, BackboneWeights] = field(default_factory=dict)
