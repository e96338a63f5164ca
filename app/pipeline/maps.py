"""Maps, the PNG side of the respond stage: the heat map of a pair as it was scored."""

from __future__ import annotations

import torch

from app.difference_map import difference_map_png
from app.metrics import masks
from app.vocabulary import MapKind


def map_png(
    reference: torch.Tensor, candidate: torch.Tensor, kind: MapKind, mask: torch.Tensor | None
) -> bytes:
    """The ``kind`` heat map of the pair as scored: the candidate is the reference's pixels
    outside ``mask`` (pixel work: run it on the decode threads)."""
    scored = candidate if mask is None else masks.composite(reference, candidate, mask)
    return difference_map_png(reference, scored, kind)
