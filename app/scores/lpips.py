"""LPIPS v0.1 (learned perceptual image patch similarity), per pair, from a network's taps.

For taps k = 1..L of a network phi (AlexNet relu1..relu5 for ``lpips``, VGG16 relu1_2..relu5_3
for ``lpips_vgg``; ``app.models``), with per-tap linear heads w_k >= 0 (``(1, C_k, 1, 1)``):

    n_k(x) = phi_k(x) / (||phi_k(x)||_2 over channels + 1e-10)       (per position)
    d_k(x, y)[h, w] = sum_c w_kc * (n_k(x) - n_k(y))[c, h, w] ** 2    (the tap's distance map)
    lpips(x, y) = sum_k mean_{h,w} d_k(x, y)

Zhang, Isola, Efros, Shechtman, Wang, "The Unreasonable Effectiveness of Deep Features as a
Perceptual Metric", CVPR 2018 (v0.1: the package's current version, inputs through its
``ScalingLayer``). Equal to ``lpips.LPIPS(net=..., version='0.1')(x, y, normalize=True)``
(lpips 0.1.4) given the same backbone weights, to 1e-4 relative or 1e-6 absolute (tested on
photographs); the math here is float32 whatever precision the backbone ran in, and uses no op
that autocast would lower.

With a region of interest: at each tap the mask is reduced to the tap's resolution by area
interpolation (``app.scores.masks.tap_weights``: the fraction m_k of each cell inside the mask)
and the spatial mean becomes the weighted mean ``sum_{h,w} m_k d_k / sum_{h,w} m_k``: a masked
lpips is the mean over the mask of each tap's distance map, at that tap's resolution, summed
over taps. An all-ones mask gives the unmasked value (m_k = 1 everywhere); an empty mask has no
mean (NaN: callers refuse empty masks first).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

EPSILON = 1e-10  # lpips.normalize_tensor's eps


def unit_normalize(features: torch.Tensor, eps: float = EPSILON) -> torch.Tensor:
    """``(N, C, H, W)``: each position's channel vector divided by its L2 norm plus ``eps``."""
    norm = torch.sqrt(torch.sum(features**2, dim=1, keepdim=True))
    return features / (norm + eps)


def distance_maps(
    fx: Sequence[torch.Tensor], fy: Sequence[torch.Tensor], *, heads: Sequence[torch.Tensor]
) -> list[torch.Tensor]:
    """Per tap, the distance map ``d_k``: ``(N, C_k, H_k, W_k) x2 -> (N, 1, H_k, W_k)``, fp32.

    Args:
        fx, fy: per tap, the references' and the candidates' activations.
        heads: per tap, the LPIPS linear layer's weight, ``(1, C_k, 1, 1)`` (best placed on the
            taps' device once: one elsewhere is copied per call).
    """
    if not (len(fx) == len(fy) == len(heads)):
        raise ValueError("fx, fy and heads need one entry per tap")
    maps = []
    for a, b, head in zip(fx, fy, heads, strict=True):
        if a.shape != b.shape or head.shape != (1, a.shape[1], 1, 1):
            raise ValueError(
                f"a tap of shape {tuple(a.shape)} vs {tuple(b.shape)} needs a head of shape "
                f"(1, {a.shape[1]}, 1, 1), got {tuple(head.shape)}"
            )
        diff = (unit_normalize(a.float()) - unit_normalize(b.float())) ** 2
        weight = head.to(device=diff.device, dtype=torch.float32)  # no-op when placed already
        maps.append((diff * weight).sum(dim=1, keepdim=True))
    return maps


def lpips(
    fx: Sequence[torch.Tensor],
    fy: Sequence[torch.Tensor],
    *,
    heads: Sequence[torch.Tensor],
    masks: Sequence[torch.Tensor] | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """LPIPS per pair (see the module docstring).

    Args:
        fx, fy: per tap, activations of the references and the candidates, ``(N, C_k, H_k, W_k)``.
        heads: per tap, the linear layer's weight ``(1, C_k, 1, 1)``
            (``app.models.weights.load_lpips_head``).
        masks: per tap, the region of interest as cell weights ``(N, 1, H_k, W_k)``
            (``app.scores.masks.tap_weights``).

    Returns:
        ``(total, per_tap)``: ``(N,)`` and ``(N, taps)``, total the sum of per_tap (the package's
        ``retPerLayer``). Identical taps give exactly 0.
    """
    maps = distance_maps(fx, fy, heads=heads)
    if masks is None:
        per_tap = torch.stack([d.mean(dim=(1, 2, 3)) for d in maps], dim=1)
    else:
        if len(masks) != len(maps):
            raise ValueError("masks need one entry per tap")
        per_tap = torch.stack(
            [_weighted_mean(d, m.float()) for d, m in zip(maps, masks, strict=True)], dim=1
        )
    return per_tap.sum(dim=1), per_tap


def lpips_map(
    fx: Sequence[torch.Tensor],
    fy: Sequence[torch.Tensor],
    *,
    heads: Sequence[torch.Tensor],
    size: tuple[int, int],
) -> torch.Tensor:
    """The LPIPS spatial map at ``size = (H, W)``: ``sum_k upsample(d_k)``, ``(N, 1, H, W)``.

    Each tap's distance map is upsampled bilinearly (``align_corners=False``) to ``size`` and
    the maps are summed: ``LPIPS(..., spatial=True)``, to 1e-4 relative or 1e-6 absolute. Its
    mean is close to, not equal to, ``lpips`` (bilinear upsampling does not keep the mean).
    """
    maps = distance_maps(fx, fy, heads=heads)
    total = F.interpolate(maps[0], size=size, mode="bilinear", align_corners=False)
    for d in maps[1:]:
        total = total + F.interpolate(d, size=size, mode="bilinear", align_corners=False)
    return total


def _weighted_mean(values: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """``(N, 1, H, W) x2 -> (N,)``: ``sum(w * v) / sum(w)`` per sample."""
    return (values * weights).sum(dim=(1, 2, 3)) / weights.sum(dim=(1, 2, 3))
