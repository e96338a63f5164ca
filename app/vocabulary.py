"""The service's vocabulary: the wire names from ``simscore_client.vocabulary`` (one definition
for the server, its command line, the client and the tests) and the server's own naming rules."""

from __future__ import annotations

from simscore_client.vocabulary import (
    CSV_COLUMNS,
    FEATURE_SCORES,
    LOWER_IS_MORE_ALIKE,
    MAP_KINDS,
    MAP_RANGES,
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
    csv_row,
    csv_value,
)

from app.errors import InvalidRequest

ALL_SCORES: frozenset[ScoreName] = frozenset(SCORE_NAMES)


def preprocessing_tag(max_side: int) -> str:
    """What, besides its pixels, makes a decoded reference what it is: part of the reference
    cache key (``app.scoring.references.reference_key``), so a cached reference is never reused
    for one prepared another way."""
    return f"max_side={max_side}"


__all__ = [
    "ALL_SCORES",
    "CSV_COLUMNS",
    "FEATURE_SCORES",
    "LOWER_IS_MORE_ALIKE",
    "MAP_KINDS",
    "MAP_RANGES",
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
    "csv_row",
    "csv_value",
    "parse_scores",
    "preprocessing_tag",
]


def parse_scores(text: str | None, *, field: str = "scores") -> frozenset[ScoreName]:
    """``"vgg,ssim"`` -> those scores; ``None``, empty or no name at all (``","``): every score.
    ``field`` names where the text came from in the 422 for an unknown name."""
    names = {part.strip().lower() for part in (text or "").split(",") if part.strip()}
    if not names:
        return ALL_SCORES
    unknown = sorted(names - set(SCORE_NAMES))
    if unknown:
        raise InvalidRequest(
            f"{field}: unknown score(s) {', '.join(unknown)}; choose from {', '.join(SCORE_NAMES)}"
        )
    return frozenset(name for name in SCORE_NAMES if name in names)
