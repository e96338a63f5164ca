"""The prepare stage: a request's decoded images -> the pairs the scorer takes.

Outside the mask, a candidate's pixels become the reference's (``app.metrics.masks.composite``),
so nothing there can move a score, through VGG's receptive fields or SSIM's window; the mask is
checked against the scores asked for (ssim needs a window centre inside it). Pixel work: it runs
on the decode threads.
"""

from __future__ import annotations

from app.imaging import PreparedImage
from app.metrics import masks
from app.pipeline.types import DecodedRequest
from app.scoring import PairRequest
from app.vocabulary import ScoreName


def prepare_pairs(
    decoded: DecodedRequest, scores: frozenset[ScoreName]
) -> list[PairRequest | BaseException]:
    """One ``PairRequest`` per decoded candidate, in order; a candidate that failed to decode
    keeps its error."""
    if decoded.mask is not None:
        masks.check_for(decoded.mask, scores)
    return [
        item if isinstance(item, BaseException) else pair_of(decoded, item, scores)
        for item in decoded.candidates
    ]


def pair_of(
    decoded: DecodedRequest, candidate: PreparedImage, scores: frozenset[ScoreName]
) -> PairRequest:
    """The pair the scorer sees for one candidate (composited when there is a mask)."""
    reference, mask = decoded.reference.tensor, decoded.mask
    pixels = (
        candidate.tensor if mask is None else masks.composite(reference, candidate.tensor, mask)
    )
    return PairRequest(reference, pixels, scores, decoded.reference_key, mask)
