"""VGG perceptual distance (pix2pixHD's ``VGGLoss``), per pair.

    vgg(x, y) = sum_i w_i * mean_{c,h,w} |phi_i(x) - phi_i(y)|,   w = (1/32, 1/16, 1/8, 1/4, 1)

with phi_i the VGG19 activations at relu1_1 ... relu5_1 of ImageNet-normalised inputs.
Wang et al., "High-Resolution Image Synthesis and Semantic Manipulation with Conditional GANs",
CVPR 2018.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

VGG_TAP_WEIGHTS: tuple[float, ...] = (1 / 32, 1 / 16, 1 / 8, 1 / 4, 1.0)


def tap_l1(fx: torch.Tensor, fy: torch.Tensor) -> torch.Tensor:
    """Mean absolute difference per sample: ``(N, C, H, W) x2 -> (N,)`` in float32.

    Reduces over (C, H, W) in place, so channels-last activations are not copied.
    """
    return (fx.float() - fy.float()).abs_().mean(dim=(1, 2, 3))


def vgg_distance(
    fx: Sequence[torch.Tensor],
    fy: Sequence[torch.Tensor],
    weights: Sequence[float] = VGG_TAP_WEIGHTS,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Weighted VGG feature distance.

    Args:
        fx, fy: per tap, activations of the references and the candidates, ``(N, C_i, H_i, W_i)``.
        weights: one weight per tap.

    Returns:
        ``(total, per_tap)``: ``(N,)`` and ``(N, taps)``; per_tap is unweighted, so
        ``total == per_tap @ weights``.
    """
    if not (len(fx) == len(fy) == len(weights)):
        raise ValueError("fx, fy and weights need one entry per tap")
    per_tap = torch.stack([tap_l1(a, b) for a, b in zip(fx, fy, strict=True)], dim=1)
    w = torch.tensor(weights, dtype=per_tap.dtype, device=per_tap.device)
    return per_tap @ w, per_tap
