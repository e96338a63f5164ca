"""What the server answers, as typed results (``raw`` keeps the whole JSON)."""

from __future__ import annotations

import base64
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeAlias

from simscore_client.errors import SimscoreAPIError
from simscore_client.vocabulary import SCORE_NAMES, csv_row


@dataclass(frozen=True)
class Scores:
    """The five scores; ``None`` where not asked for (and ``psnr`` for identical images)."""

    vgg: float | None
    style: float | None
    ssim: float | None
    mse: float | None
    psnr: float | None


@dataclass(frozen=True)
class CompareResult:
    """One scored pair, as ``POST /compare`` answers it (``raw`` is the whole JSON)."""

    scores: Scores
    vgg_layers: dict[str, float] | None
    style_layers: dict[str, float] | None
    width: int
    height: int
    resized: bool
    mask_coverage: float | None
    model: dict[str, str]
    timing_ms: dict[str, float]
    reference_cached: bool
    map_png: bytes | None
    raw: dict[str, Any] = field(repr=False)

    @classmethod
    def from_json(cls, body: Mapping[str, Any]) -> CompareResult:
        scores = body["scores"]
        layers = body.get("layers") or {}
        image = body["image"]
        encoded = body.get("map_png_base64")
        return cls(
            scores=Scores(*(scores.get(name) for name in SCORE_NAMES)),
            vgg_layers=layers.get("vgg"),
            style_layers=layers.get("style"),
            width=image["width"],
            height=image["height"],
            resized=image["resized"],
            mask_coverage=image.get("mask_coverage"),
            model=dict(body["model"]),
            timing_ms=dict(body["timing_ms"]),
            reference_cached=bool(body.get("reference_cached", False)),
            map_png=base64.b64decode(encoded) if encoded else None,
            raw=dict(body),
        )


BatchItem: TypeAlias = "CompareResult | SimscoreAPIError"


@dataclass(frozen=True)
class DifferenceMap:
    """A heat map PNG and the values its first and last colours stand for."""

    png: bytes
    kind: str
    value_range: tuple[float, float]

    def save(self, path: str | os.PathLike[str]) -> None:
        Path(path).write_bytes(self.png)


def csv_row_of(candidate: str, item: BatchItem) -> list[str]:
    """The ``vocabulary.CSV_COLUMNS`` row of one candidate's result or error."""
    if isinstance(item, SimscoreAPIError):
        return csv_row(candidate, None, item.detail)
    return csv_row(candidate, item.raw)
