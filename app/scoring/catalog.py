"""Every score this service knows, and what this server can compute of them.

A score is either computed from the pixels (ssim, mse, psnr, flip, ms_ssim: no network; ms_ssim
needs 161 px) or from the taps of a network of the model registry (``app.models.registry``):
vgg and style from VGG19, lpips from AlexNet, lpips_vgg and dists from VGG16. Per score: its
backbone, its direction, the smallest side it accepts, whether a request gets it by default,
and, on this server, whether it is available (its backbone's weights were found at start-up)
and if not, why.

``Catalog.check`` refuses a request for an unavailable score before anything is decoded
(``ScoreUnavailable``, 422, naming the setting and the fetch command); ``check_sides`` refuses
a compared image smaller than a requested score's minimum (``ImageTooSmallForScore``, 422,
naming the score, its minimum and the image's size), only for the scores asked for.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from app.errors import ImageTooSmallForScore, ScoreUnavailable
from app.models import registry
from app.models.spec import Direction
from app.scores.ms_ssim import MIN_SIDE as MS_SSIM_MIN_SIDE
from app.vocabulary import (
    DEFAULT_SCORES,
    LOWER_IS_MORE_ALIKE,
    MAP_SCORES,
    MIN_SIDE,
    SCORE_NAMES,
    MapKind,
    ScoreName,
)

# Why a score needs the sides it needs, for the 422 that refuses a smaller image.
_SIDE_REASONS: Mapping[str, str] = {
    "lpips": "AlexNet's 11x11 stride-4 convolution and two 3x3 stride-2 max pools come before "
    "relu5",
    "ms_ssim": "its 11 px window must fit after four halvings",
}
# The pixel scores with a floor of their own (the networks' come from the model registry).
_PIXEL_MIN_SIDES: Mapping[str, int] = {"ms_ssim": MS_SSIM_MIN_SIDE}
_GENERAL_REASON = "VGG19 to relu5_1 pools four times and SSIM needs an 11 px window"


@dataclass(frozen=True)
class ScoreInfo:
    """One score as ``GET /scores`` lists it."""

    name: ScoreName
    backbone: str | None  # the registry's backbone ("alexnet"); None: computed from the pixels
    network: str | None  # the registry's network ("lpips_alexnet")
    direction: Direction  # "lower": lower is more alike
    min_side: int  # the smallest height and width, in pixels
    default: bool  # computed when a request names no scores
    unavailable: str | None = None  # why this server cannot compute it (None: it can)

    @property
    def available(self) -> bool:
        return self.unavailable is None


def backbone_of(score: str) -> tuple[str, str] | None:
    """``(backbone, network)`` of a score a network computes; None for a pixel score."""
    try:
        spec, network, _ = registry.network_of(score)
    except KeyError:
        return None
    return spec.name, network.name


def min_side(score: str) -> int:
    """The smallest side a score accepts: simscore's general floor (``MIN_SIDE``, 16 px) or its
    network's, whichever is larger."""
    found = backbone_of(score)
    own = _PIXEL_MIN_SIDES.get(score, MIN_SIDE) if found is None else registry.min_side(score)
    return max(MIN_SIDE, own)


def map_score(kind: MapKind) -> ScoreName | None:
    """The score whose network draws a map of ``kind`` (None: drawn from the pixels)."""
    return MAP_SCORES.get(kind)


def check_sides(scores: Iterable[str], width: int, height: int) -> None:
    """Refuse (``ImageTooSmallForScore``, 422) a compared image under the minimum of a score
    asked for, naming the score, its minimum and the image's size. Only the scores asked for
    count."""
    for score in sorted(scores, key=lambda name: (-min_side(name), name)):
        needed = min_side(score)
        if min(width, height) < needed:
            why = _SIDE_REASONS.get(score, _GENERAL_REASON)
            raise ImageTooSmallForScore(
                f"{score} needs both sides of at least {needed} px ({why}); the compared image "
                f"is {width}x{height} px: send a larger image or leave {score} out of 'scores'",
                score=score,
                minimum_px=needed,
            )


class Catalog:
    """Every score and its availability on this server (``unavailable``: per backbone that
    could not be loaded, the message saying why and what to do)."""

    def __init__(self, unavailable: Mapping[str, str] | None = None) -> None:
        self._unavailable = dict(unavailable or {})
        self.entries: tuple[ScoreInfo, ...] = tuple(self._entry(name) for name in SCORE_NAMES)
        self._by_name: dict[str, ScoreInfo] = {entry.name: entry for entry in self.entries}

    def __getitem__(self, name: str) -> ScoreInfo:
        return self._by_name[name]

    @property
    def available(self) -> frozenset[ScoreName]:
        return frozenset(entry.name for entry in self.entries if entry.available)

    def check(self, scores: Iterable[str]) -> None:
        """Refuse (``ScoreUnavailable``, 422) a request for a score this server cannot compute:
        the detail names the score, the setting of its backbone and the fetch command."""
        for name in sorted(scores, key=list(self._by_name).index):
            reason = self._by_name[name].unavailable
            if reason is not None:
                raise ScoreUnavailable(f"{name} is not available on this server: {reason}")

    def _entry(self, name: ScoreName) -> ScoreInfo:
        found = backbone_of(name)
        backbone, network = found if found is not None else (None, None)
        return ScoreInfo(
            name=name,
            backbone=backbone,
            network=network,
            direction="lower" if name in LOWER_IS_MORE_ALIKE else "higher",
            min_side=min_side(name),
            default=name in DEFAULT_SCORES,
            unavailable=self._unavailable.get(backbone) if backbone is not None else None,
        )
