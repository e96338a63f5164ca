"""Gram-matrix style distance (Gatys et al., "Image Style Transfer Using CNNs", CVPR 2016).

For one sample and one tap with features F of shape (C, H*W):

    G = F F^T / (C * H * W)
    style(x, y) = sum_i mean_{c,c'} |G_i(x) - G_i(y)|      (weights 1 for every tap)

With a region of interest, w (H*W,) the fraction of each tap cell inside the mask
(``app.scores.masks.tap_weights`` of the ``mask``): G = F diag(w) F^T / (C * sum(w)); all-ones
w gives G above.

How this differs from the article's example code: it flattened the batch into the channel axis
(``view(b * c, -1)``), so one Gram matrix mixed every sample of a batch and a pair's score depended
on its neighbours; here each sample has its own ``(C, C)`` matrix. It also did not normalise, so
its values grew with H*W (a 4x larger image gave ~4x the loss); dividing by C*H*W makes the score
comparable across image sizes and across taps. Its value equals the article's per-sample Gram
divided by C*H*W, i.e. ``style_here = style_article / (C*H*W)`` tap by tap.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from app.scores.masks import tap_weights


def gram_matrix(features: torch.Tensor, weights: torch.Tensor | None = None) -> torch.Tensor:
    """Per-sample normalised Gram matrix: ``(N, C, H, W) -> (N, C, C)`` in float32.

    ``weights`` ``(N, 1, H, W)`` in [0, 1] (a region of interest) gives
    ``F diag(w) F^T / (C * sum(w))``. Works on either memory format without a copy for
    channels-last inputs.
    """
    n, c, h, w = features.shape
    f = features.float()
    cells = None if weights is None else weights.float().reshape(n, h * w)
    if f.is_contiguous(memory_format=torch.channels_last) and not f.is_contiguous():
        rows = f.permute(0, 2, 3, 1).reshape(n, h * w, c)  # (N, HW, C), a view
        left = rows if cells is None else rows * cells.unsqueeze(2)
        gram = torch.bmm(left.transpose(1, 2), rows)
    else:
        cols = f.reshape(n, c, h * w)
        left = cols if cells is None else cols * cells.unsqueeze(1)
        gram = torch.bmm(left, cols.transpose(1, 2))
    if cells is None:
        return gram.div_(c * h * w)
    return gram.div_(cells.sum(1).mul(c).view(n, 1, 1))


def gram_matrices(
    taps: Sequence[torch.Tensor], *, mask: torch.Tensor | None = None
) -> list[torch.Tensor]:
    """Each tap's Gram matrices, ``(N, C_i, H_i, W_i) -> (N, C_i, C_i)``; with ``mask``
    ``(N, 1, H, W)`` (a region of interest at the images' size), weighted by the fraction of
    each tap cell inside it."""
    if mask is None:
        return [gram_matrix(f) for f in taps]
    cells = tap_weights(mask, [t.shape for t in taps])
    return [gram_matrix(f, w) for f, w in zip(taps, cells, strict=True)]


def style_distance(
    gx: Sequence[torch.Tensor], gy: Sequence[torch.Tensor]
) -> tuple[torch.Tensor, torch.Tensor]:
    """Style distance from per-tap Gram matrices ``(N, C_i, C_i)``.

    Returns ``(total, per_tap)``: ``(N,)`` and ``(N, taps)``, total the unweighted sum.
    """
    if len(gx) != len(gy):
        raise ValueError("gx and gy need one entry per tap")
    per_tap = torch.stack(
        [(a - b).abs_().flatten(1).mean(1) for a, b in zip(gx, gy, strict=True)], dim=1
    )
    return per_tap.sum(1), per_tap
