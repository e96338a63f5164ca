"""A region of interest, carried to where each metric needs it.

A mask ``m`` is ``(N, 1, H, W)`` at the compared size, nonzero where pixels are compared. Each
metric sees it in its own terms (the contract is in the README's Scores section):

* mse: the pixels (and channels) inside ``m``;
* ssim: the window positions whose centre lies inside ``m`` (``window_centres``);
* vgg and style: at each tap, the fraction of each cell inside ``m`` (``tap_weights``: area
  interpolation to the tap's resolution), used as weights.

Before any metric runs, the candidate's pixels outside the mask are replaced by the
reference's (``composite``), so nothing outside the mask can change a score, not even through
VGG's receptive fields or the SSIM window.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

from app.metrics.ssim import WINDOW_SIZE


def composite(reference: torch.Tensor, candidate: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """The candidate inside ``mask``, the reference outside: ``(C, H, W)`` or ``(N, C, H, W)``
    images, ``mask`` broadcastable to them (nonzero: inside)."""
    return torch.where(mask.bool(), candidate, reference)


def coverage(mask: torch.Tensor) -> float:
    """The fraction of pixels inside ``mask``."""
    return float(mask.bool().float().mean())


def window_centres(mask: torch.Tensor, window_size: int = WINDOW_SIZE) -> torch.Tensor:
    """``(N, 1, H, W) -> (N, 1, H-w+1, W-w+1)``: where the centre of each valid SSIM window lies
    inside the mask (the positions ``ssim_map`` computes)."""
    margin = window_size // 2
    height, width = mask.shape[-2:]
    return mask.bool()[..., margin : height - margin, margin : width - margin]


def tap_weights(mask: torch.Tensor, shapes: Sequence[Sequence[int]]) -> list[torch.Tensor]:
    """For each tap shape ``(..., h, w)``, the fraction of each of its cells inside the mask:
    ``(N, 1, H, W) -> (N, 1, h, w)`` by area interpolation, in float32."""
    inside = mask.bool().float()
    return [F.interpolate(inside, size=tuple(shape[-2:]), mode="area") for shape in shapes]
