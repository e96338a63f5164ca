"""Maps, the PNG side of the respond stage: the heat map of a pair as it was scored. Pixel maps
(ssim, abs) are drawn from the pair's pixels; a map a score draws (lpips, lpips_vgg from their
networks, flip's error map) comes back from the scorer with the pair's scores and is only
coloured here."""

from __future__ import annotations

import torch

from app.difference_map import colorize, difference_map_png, encode_png
from app.flip_map import flip_map_png
from app.scores import masks
from app.vocabulary import MAP_RANGES, MapKind


def map_png(
    reference: torch.Tensor, candidate: torch.Tensor, kind: MapKind, mask: torch.Tensor | None
) -> bytes:
    """The ``kind`` heat map of the pair as scored: the candidate is the reference's pixels
    outside ``mask`` (pixel work: run it on the decode threads)."""
    scored = candidate if mask is None else masks.composite(reference, candidate, mask)
    return difference_map_png(reference, scored, kind)


def scored_map_png(values: torch.Tensor, kind: MapKind) -> bytes:
    """The PNG of a map the scorer computed, ``(H, W)``, over ``kind``'s fixed colour range
    (values outside it are clipped): FLIP's error map in the reference tool's magma
    (``app.flip_map``), a network's map in viridis."""
    if kind == "flip":
        return flip_map_png(values)
    return encode_png(colorize(values, *MAP_RANGES[kind]))
