"""The service's vocabulary: the wire names from ``simscore_client.vocabulary`` (one definition
for the server, its command line, the client and the tests) and the server's own naming rules."""

from __future__ import annotations

from simscore_client.vocabulary import (
    CSV_COLUMNS,
    DEFAULT_SCORE_NAMES,
    DEFAULT_SCORES,
    FEATURE_SCORES,
    LOWER_IS_MORE_ALIKE,
    MAP_KINDS,
    MAP_RANGES,
    MAP_SCORES,
    MIN_SIDE,
    PIXEL_SCORES,
    PRECISIONS,
    SCORE_NAMES,
    SIZE_POLICIES,
    TAP_NAMES,
    MapKind,
    Precision,
    ScoreName,
    SizePolicy,
    TapName,
    csv_columns,
    csv_row,
    csv_value,
    score_columns,
)

from app.errors import InvalidRequest

# Every score; a request that names none gets DEFAULT_SCORES.
ALL_SCORES: frozenset[ScoreName] = frozenset(SCORE_NAMES)


def preprocessing_tag(max_side: int) -> str:
    """What, besides its pixels, makes a decoded reference what it is: part of the reference
    cache key (``app.scoring.references.reference_key``), so a cached reference is never reused
    for one prepared another way."""
    return f"max_side={max_side}"


__all__ = [
    "ALL_SCORES",
    "CSV_COLUMNS",
    "DEFAULT_SCORES",
    "DEFAULT_SCORE_NAMES",
    "FEATURE_SCORES",
    "LOWER_IS_MORE_ALIKE",
    "MAP_KINDS",
    "MAP_RANGES",
    "MAP_SCORES",
    "MIN_SIDE",
    "PIXEL_SCORES",
    "PRECISIONS",
    "SCORE_NAMES",
    "SIZE_POLICIES",
    "TAP_NAMES",
    "MapKind",
    "Precision",
    "ScoreName",
    "SizePolicy",
    "TapName",
    "csv_columns",
    "csv_row",
    "csv_value",
    "parse_scores",
    "preprocessing_tag",
    "score_columns",
]


def parse_scores(text: str | None, *, field: str = "scores") -> frozenset[ScoreName]:
    """``"vgg,ssim"`` -> those scores; ``None``, empty or no name at all (``","``): the default
    scores (``DEFAULT_SCORES``). ``field`` names where the text came from in the 422 for an
    unknown name."""
    names = {part.strip().lower() for part in (text or "").split(",") if part.strip()}
    if not names:
        return DEFAULT_SCORES
    unknown = sorted(names - set(SCORE_NAMES))
    if unknown:
        raise InvalidRequest(
            f"{field}: unknown score(s) {', '.join(unknown)}; choose from {', '.join(SCORE_NAMES)}"
        )
    return frozenset(name for name in SCORE_NAMES if name in names)
