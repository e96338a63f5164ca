"""VGG perceptual distance (pix2pixHD's ``VGGLoss``), per pair.

    vgg(x, y) = sum_i w_i * mean_{c,h,w} |phi_i(x) - phi_i(y)|,   w = (1/32, 1/16, 1/8, 1/4, 1)

with phi_i the VGG19 activations at relu1_1 ... relu5_1 of ImageNet-normalised inputs. With a
region of interest, w_i the fraction of each tap cell inside the mask
(``app.scores.masks.tap_weights``), the mean becomes the weighted mean
sum_{c,h,w} w_i |phi_i(x) - phi_i(y)| / (C_i * sum(w_i)).
Wang et al., "High-Resolution Image Synthesis and Semantic Manipulation with Conditional GANs",
CVPR 2018.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from app.scores.constants import constant
from app.scores.masks import tap_weights

VGG_TAP_WEIGHTS: tuple[float, ...] = (1 / 32, 1 / 16, 1 / 8, 1 / 4, 1.0)


def tap_l1(fx: torch.Tensor, fy: torch.Tensor, weights: torch.Tensor | None = None) -> torch.Tensor:
    """Mean absolute difference per sample: ``(N, C, H, W) x2 -> (N,)`` in float32; with
    ``weights`` ``(N, 1, H, W)``, the mean weighted by them over positions (and channels).

    Reduces over (C, H, W) in place, so channels-last activations are not copied.
    """
    diff = (fx.float() - fy.float()).abs_()
    if weights is None:
        return diff.mean(dim=(1, 2, 3))
    w = weights.float()
    return diff.mul_(w).sum(dim=(1, 2, 3)) / (w.sum(dim=(1, 2, 3)) * diff.shape[1])


def vgg_distance(
    fx: Sequence[torch.Tensor],
    fy: Sequence[torch.Tensor],
    weights: Sequence[float] = VGG_TAP_WEIGHTS,
    *,
    mask: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Weighted VGG feature distance.

    Args:
        fx, fy: per tap, activations of the references and the candidates, ``(N, C_i, H_i, W_i)``.
        weights: one weight per tap.
        mask: the region of interest ``(N, 1, H, W)`` at the images' size (``app.scores.masks``).

    Returns:
        ``(total, per_tap)``: ``(N,)`` and ``(N, taps)``; per_tap is unweighted, so
        ``total == per_tap @ weights``.
    """
    if not len(fx) == len(fy) == len(weights):
        raise ValueError("fx, fy and weights need one entry per tap")
    cells: Sequence[torch.Tensor | None] = (
        [None] * len(fx) if mask is None else tap_weights(mask, [t.shape for t in fy])
    )
    per_tap = torch.stack([tap_l1(a, b, m) for a, b, m in zip(fx, fy, cells, strict=True)], dim=1)
    w = constant(tuple(float(v) for v in weights), per_tap.dtype, per_tap.device)
    return per_tap @ w, per_tap
