"""What the server answers, as typed results (``raw`` keeps the whole JSON)."""

from __future__ import annotations

import base64
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeAlias

from simscore_client.errors import SimscoreAPIError
from simscore_client.vocabulary import DEFAULT_SCORE_NAMES, SCORE_NAMES, csv_row


@dataclass(frozen=True)
class Scores:
    """Every score, in ``SCORE_NAMES`` order; ``None`` where not asked for (and ``psnr`` for
    identical images). A request that names no scores gets the first five; ``lpips``,
    ``lpips_vgg``, ``dists``, ``flip`` and ``ms_ssim`` are opt-in (``scores="lpips,flip"``)."""

    vgg: float | None
    style: float | None
    ssim: float | None
    mse: float | None
    psnr: float | None
    lpips: float | None = None
    lpips_vgg: float | None = None
    dists: float | None = None
    flip: float | None = None
    ms_ssim: float | None = None


@dataclass(frozen=True)
class ScoreInfo:
    """One score as ``GET /scores`` lists it: its backbone (None: computed from the pixels),
    ``direction`` (``"lower"``: lower is more alike), the smallest side it accepts, whether a
    request gets it by default, and whether this server can compute it (``reason``: why not)."""

    name: str
    backbone: str | None
    direction: str
    min_side: int
    default: bool
    available: bool
    reason: str | None
    map_kind: str | None = None

    @classmethod
    def from_json(cls, body: Mapping[str, Any]) -> ScoreInfo:
        return cls(
            name=str(body["name"]),
            backbone=body.get("backbone"),
            direction=str(body["direction"]),
            min_side=int(body["min_side"]),
            default=bool(body["default"]),
            available=bool(body["available"]),
            reason=body.get("reason"),
            map_kind=body.get("map_kind"),
        )


@dataclass(frozen=True)
class Verdict:
    """The pair checked against the thresholds: ``passed``, and the conditions that did not
    hold in canonical form (``"ssim>=0.92"``), in the order given."""

    passed: bool
    failed: tuple[str, ...]

    @classmethod
    def from_json(cls, body: Mapping[str, Any] | None) -> Verdict | None:
        if body is None:
            return None
        return cls(passed=bool(body["passed"]), failed=tuple(body["failed"]))


@dataclass(frozen=True)
class BatchSummary:
    """How many candidates of a batch passed, failed their thresholds, and could not be scored."""

    passed: int
    failed: int
    errors: int

    @classmethod
    def from_json(cls, body: Mapping[str, Any] | None) -> BatchSummary | None:
        if body is None:
            return None
        return cls(
            passed=int(body["passed"]), failed=int(body["failed"]), errors=int(body["errors"])
        )


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
    model: dict[str, Any]  # VGG19 (name, weights, sha256), device, precision, "backbones"
    timing_ms: dict[str, float]
    reference_cached: bool
    map_png: bytes | None
    raw: dict[str, Any] = field(repr=False)
    verdict: Verdict | None = None  # with thresholds (the request's or the server's default)

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
            verdict=Verdict.from_json(body.get("verdict")),
        )


BatchItem: TypeAlias = "CompareResult | SimscoreAPIError"


class BatchResults(list[BatchItem]):
    """The items of ``compare_batch`` in the order given (a list, as before), and with
    thresholds the batch's ``summary`` (``None`` without)."""

    def __init__(self, items: Iterable[BatchItem] = (), summary: BatchSummary | None = None):
        super().__init__(items)
        self.summary = summary


@dataclass(frozen=True)
class DifferenceMap:
    """A heat map PNG and the values its first and last colours stand for."""

    png: bytes
    kind: str
    value_range: tuple[float, float]

    def save(self, path: str | os.PathLike[str]) -> None:
        Path(path).write_bytes(self.png)


def csv_row_of(
    candidate: str, item: BatchItem, *, scores: Sequence[str] = DEFAULT_SCORE_NAMES
) -> list[str]:
    """The CSV row of one candidate's result or error: ``vocabulary.CSV_COLUMNS``, or with
    ``scores`` the columns ``csv_columns(scores)`` (``score_columns`` chooses them)."""
    if isinstance(item, SimscoreAPIError):
        return csv_row(candidate, None, item.detail, scores=scores)
    return csv_row(candidate, item.raw, scores=scores)
