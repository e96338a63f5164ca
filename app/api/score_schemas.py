"""The answer of ``GET /scores``: every score this service knows and whether this server can
compute it. A score's name is the ``ScoreName`` schema component (``app.api.openapi`` publishes
it and refers every schema of that enum to it)."""

from __future__ import annotations

from pydantic import BaseModel, Field

from app.scoring import Catalog, ScoreInfo
from app.vocabulary import MAP_SCORES, MapKind, ScoreName


class ScoreEntry(BaseModel):
    """One score: what it needs, which way it goes, and whether this server computes it."""

    name: ScoreName = Field(description="The score's name.", examples=["lpips"])
    backbone: str | None = Field(
        description="The network backbone it runs (vgg19, alexnet, vgg16); null for a score "
        "computed from the pixels.",
        examples=["alexnet"],
    )
    direction: str = Field(
        description="'lower' when a lower value means more alike (distances), 'higher' when a "
        "higher one does (ssim, psnr).",
        examples=["lower"],
    )
    min_side: int = Field(
        description="The smallest height and width, in pixels, of a compared image it accepts; "
        "a smaller one asked for it is a 422.",
        examples=[31],
    )
    default: bool = Field(description="Computed when a request names no scores.", examples=[False])
    available: bool = Field(description="This server can compute it.", examples=[False])
    reason: str | None = Field(
        description="Why it is not available (its backbone's weights are absent: the setting "
        "to set and the command that fetches them); null when it is.",
        examples=[None],
    )
    map_kind: MapKind | None = Field(
        None,
        description="The /compare/map kind drawn with this score (its network's map, or FLIP's "
        "error map; null: none).",
        examples=["lpips"],
    )


class ScoresResponse(BaseModel):
    """Every score, in the order the answers list them."""

    scores: list[ScoreEntry] = Field(description="One entry per score.")
    default: list[ScoreName] = Field(
        description="What a request that names no scores gets.",
        examples=[["vgg", "style", "ssim", "mse", "psnr"]],
    )


def _map_kind(score: str) -> MapKind | None:
    return next((kind for kind, drawn in MAP_SCORES.items() if drawn == score), None)


def score_entry(info: ScoreInfo) -> ScoreEntry:
    return ScoreEntry(
        name=info.name,
        backbone=info.backbone,
        direction=info.direction,
        min_side=info.min_side,
        default=info.default,
        available=info.available,
        reason=info.unavailable,
        map_kind=_map_kind(info.name),
    )


def scores_response(catalog: Catalog) -> ScoresResponse:
    entries = [score_entry(info) for info in catalog.entries]
    return ScoresResponse(scores=entries, default=[e.name for e in entries if e.default])
