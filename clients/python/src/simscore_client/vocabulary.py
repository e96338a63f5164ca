"""The names both sides of the wire use: the server, its command line, this client and the tests
import them from here, so they cannot drift apart.

Pure Python with no dependency: the server (``app.vocabulary``) re-exports these.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Literal, get_args

ScoreName = Literal[
    "vgg", "style", "ssim", "mse", "psnr", "lpips", "lpips_vgg", "dists", "flip", "ms_ssim"
]
SCORE_NAMES: tuple[ScoreName, ...] = get_args(ScoreName)
# What a request that names no scores gets: the original five. The others are opt-in
# (``scores=lpips,dists``): they run networks of their own (GET /scores lists every score).
DEFAULT_SCORES: frozenset[ScoreName] = frozenset({"vgg", "style", "ssim", "mse", "psnr"})
DEFAULT_SCORE_NAMES: tuple[ScoreName, ...] = tuple(n for n in SCORE_NAMES if n in DEFAULT_SCORES)
FEATURE_SCORES: frozenset[ScoreName] = frozenset({"vgg", "style"})
PIXEL_SCORES: frozenset[ScoreName] = frozenset({"mse", "psnr"})
# Which way is "more alike": lower for distances, higher for ssim and psnr.
LOWER_IS_MORE_ALIKE: frozenset[ScoreName] = frozenset(
    {"vgg", "style", "mse", "lpips", "lpips_vgg", "dists", "flip"}
)

TapName = Literal["relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1"]
TAP_NAMES: tuple[TapName, ...] = get_args(TapName)

SizePolicy = Literal["resize", "strict"]
SIZE_POLICIES: tuple[SizePolicy, ...] = get_args(SizePolicy)

MapKind = Literal["ssim", "abs", "lpips", "lpips_vgg", "flip"]
MAP_KINDS: tuple[MapKind, ...] = get_args(MapKind)
# (lo, hi) of each map's colour scale: lo is the first colour, hi the last.
MAP_RANGES: Mapping[MapKind, tuple[float, float]] = {
    "ssim": (0.0, 1.0),
    "abs": (0.0, 1.0),
    "lpips": (0.0, 1.0),
    "lpips_vgg": (0.0, 1.0),
    "flip": (0.0, 1.0),
}
# Maps drawn by a score's own computation (on the batch worker, with the pair's scores: a
# network's for lpips and lpips_vgg, FLIP's error map for flip): the score that draws each.
# The other kinds (ssim, abs) are drawn from the pixels alone on the decode threads.
MAP_SCORES: Mapping[MapKind, ScoreName] = {
    "lpips": "lpips",
    "lpips_vgg": "lpips_vgg",
    "flip": "flip",
}

Precision = Literal["fp32", "fp16", "bf16"]
PRECISIONS: tuple[Precision, ...] = get_args(Precision)

MIN_SIDE = 16  # VGG19 to relu5_1 pools four times; SSIM needs an 11 px window


# One row per candidate, the same from `simscore compare --csv`, the web page's export and a
# client job: numbers as Python's repr (shortest round trip), null as empty, booleans lower case.
# `passed` and `failed` are the verdict's (empty without thresholds; `failed` comma-separated).
# The score columns are the default scores, then every other score that at least one row has a
# value for (``score_columns``), in ``SCORE_NAMES`` order: ``CSV_COLUMNS`` is a CSV of default
# scores, ``csv_columns(...)`` one with more.
def csv_columns(scores: Sequence[str] = DEFAULT_SCORE_NAMES) -> tuple[str, ...]:
    """The CSV header for these score columns."""
    return ("candidate", *scores, "width", "height", "resized", "passed", "failed", "error")


CSV_COLUMNS: tuple[str, ...] = csv_columns()


def score_columns(bodies: Iterable[Mapping[str, Any] | None]) -> tuple[ScoreName, ...]:
    """The score columns of a CSV (or a table) of these ``POST /compare`` bodies (None: an
    error): the default scores, then each other score that at least one body has a value for."""
    shown = set(DEFAULT_SCORES)
    for body in bodies:
        scores = (body or {}).get("scores") or {}
        shown.update(name for name in SCORE_NAMES if scores.get(name) is not None)
    return tuple(name for name in SCORE_NAMES if name in shown)


def csv_value(value: object) -> str:
    """One CSV cell: ``repr`` for finite floats, empty for None, ``true``/``false`` for bools."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return repr(value) if math.isfinite(value) else ""
    return str(value)


def csv_row(
    candidate: str,
    body: Mapping[str, Any] | None,
    error: str | None = None,
    *,
    scores: Sequence[str] = DEFAULT_SCORE_NAMES,
) -> list[str]:
    """The CSV row of one candidate from its ``POST /compare`` JSON body, or its error, for the
    score columns ``scores`` (``score_columns``)."""
    if body is None:
        return [candidate, *([""] * (len(csv_columns(scores)) - 2)), error or "error"]
    values_of, image, verdict = body["scores"], body["image"], body.get("verdict")
    values = [values_of.get(name) for name in scores]
    passed = verdict["passed"] if verdict else None
    failed = ",".join(verdict["failed"]) if verdict else ""
    return [
        csv_value(v)
        for v in (candidate, *values, image["width"], image["height"], image["resized"], passed)
    ] + [failed, ""]
