"""The names both sides of the wire use: the server, its command line, this client and the tests
import them from here, so they cannot drift apart.

Pure Python with no dependency: the server (``app.vocabulary``) re-exports these.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, Literal, get_args

ScoreName = Literal["vgg", "style", "ssim", "mse", "psnr"]
SCORE_NAMES: tuple[ScoreName, ...] = get_args(ScoreName)
FEATURE_SCORES: frozenset[ScoreName] = frozenset({"vgg", "style"})
PIXEL_SCORES: frozenset[ScoreName] = frozenset({"mse", "psnr"})
# Which way is "more alike": lower for distances, higher for ssim and psnr.
LOWER_IS_MORE_ALIKE: frozenset[ScoreName] = frozenset({"vgg", "style", "mse"})

TapName = Literal["relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1"]
TAP_NAMES: tuple[TapName, ...] = get_args(TapName)

SizePolicy = Literal["resize", "strict"]
SIZE_POLICIES: tuple[SizePolicy, ...] = get_args(SizePolicy)

MapKind = Literal["ssim", "abs"]
MAP_KINDS: tuple[MapKind, ...] = get_args(MapKind)
# (lo, hi) of each map's colour scale: lo is the first colour, hi the last.
MAP_RANGES: Mapping[MapKind, tuple[float, float]] = {"ssim": (0.0, 1.0), "abs": (0.0, 1.0)}

Precision = Literal["fp32", "fp16", "bf16"]
PRECISIONS: tuple[Precision, ...] = get_args(Precision)

MIN_SIDE = 16  # VGG19 to relu5_1 pools four times; SSIM needs an 11 px window

# One row per candidate, the same from `simscore compare --csv`, the web page's export and a
# client job: numbers as Python's repr (shortest round trip), null as empty, booleans lower case.
# `passed` and `failed` are the verdict's (empty without thresholds; `failed` comma-separated).
CSV_COLUMNS: tuple[str, ...] = (
    "candidate",
    *SCORE_NAMES,
    "width",
    "height",
    "resized",
    "passed",
    "failed",
    "error",
)


def csv_value(value: object) -> str:
    """One CSV cell: ``repr`` for finite floats, empty for None, ``true``/``false`` for bools."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return repr(value) if math.isfinite(value) else ""
    return str(value)


def csv_row(candidate: str, body: Mapping[str, Any] | None, error: str | None = None) -> list[str]:
    """The CSV row of one candidate from its ``POST /compare`` JSON body, or its error."""
    if body is None:
        return [candidate, *([""] * (len(CSV_COLUMNS) - 2)), error or "error"]
    scores, image, verdict = body["scores"], body["image"], body.get("verdict")
    values = [scores.get(name) for name in SCORE_NAMES]
    passed = verdict["passed"] if verdict else None
    failed = ",".join(verdict["failed"]) if verdict else ""
    return [
        csv_value(v)
        for v in (candidate, *values, image["width"], image["height"], image["resized"], passed)
    ] + [failed, ""]
