"""The prepare stage: a request's decoded images -> the pairs the scorer takes.

The compared size is checked against the smallest side of every score asked for (and of the
score drawing the map asked for): lpips needs 31 px, ms_ssim 161 px, and a request without
them is not refused for them (``app.scoring.catalog.check_sides``). Outside the mask, a
candidate's pixels become the reference's (``app.scores.masks.composite``), so nothing there
can move a score, through a network's receptive fields, SSIM's window or FLIP's filters; the
mask is checked against the scores asked for (ssim needs a window centre inside it, ms_ssim
one at each of its scales). Pixel work: it runs on the decode threads.
"""

from __future__ import annotations

from app.imaging import PreparedImage
from app.pipeline.types import DecodedRequest
from app.scores import masks
from app.scores.flip_viewing import DEFAULT_PPD
from app.scoring import PairRequest
from app.scoring.catalog import check_sides
from app.vocabulary import MAP_SCORES, MapKind, ScoreName


def prepare_pairs(
    decoded: DecodedRequest,
    scores: frozenset[ScoreName],
    map_kind: MapKind | None = None,
    ppd: float = DEFAULT_PPD,
) -> list[PairRequest | BaseException]:
    """One ``PairRequest`` per decoded candidate, in order; a candidate that failed to decode
    keeps its error. ``map_kind``: a map for the scorer to draw with the scores (one of
    ``MAP_SCORES``; any other kind is drawn later, from the pixels). ``ppd``: FLIP's viewing
    conditions."""
    drawn = map_kind if map_kind is not None and map_kind in MAP_SCORES else None
    needs = scores if drawn is None else scores | {MAP_SCORES[drawn]}
    check_sides(needs, decoded.reference.width, decoded.reference.height)
    if decoded.mask is not None:
        masks.check_for(decoded.mask, scores)
    return [
        item if isinstance(item, BaseException) else pair_of(decoded, item, scores, drawn, ppd)
        for item in decoded.candidates
    ]


def pair_of(
    decoded: DecodedRequest,
    candidate: PreparedImage,
    scores: frozenset[ScoreName],
    map_kind: MapKind | None = None,
    ppd: float = DEFAULT_PPD,
) -> PairRequest:
    """The pair the scorer sees for one candidate (composited when there is a mask)."""
    reference, mask = decoded.reference.tensor, decoded.mask
    pixels = (
        candidate.tensor if mask is None else masks.composite(reference, candidate.tensor, mask)
    )
    return PairRequest(reference, pixels, scores, decoded.reference_key, mask, map_kind, ppd)
