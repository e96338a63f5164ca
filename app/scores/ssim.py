"""Structural similarity (Wang, Bovik, Sheikh and Simoncelli, IEEE TIP 13(4), 2004).

With Gaussian-weighted local moments (11x11 window, sigma 1.5), data range L = 1,
C1 = (0.01 L)^2, C2 = (0.03 L)^2 and population (not sample) covariance:

               (2 mu_x mu_y + C1) (2 sigma_xy + C2)
    SSIM = -----------------------------------------------
           (mu_x^2 + mu_y^2 + C1) (sigma_x^2 + sigma_y^2 + C2)

evaluated where the window fits entirely inside the image (no padding), then averaged over the
three channels and all those positions. This equals scikit-image's
``structural_similarity(x, y, channel_axis=2, data_range=1, gaussian_weights=True, sigma=1.5,
use_sample_covariance=False)``.

The five local moments (x, y, x^2, y^2, xy) of all channels are filtered together by one
separable Gaussian: a horizontal and a vertical depthwise pass over a ``(N, 15, rows, W)``
stack, strip by strip of output rows on the CPU so the working set stays in cache.
"""

from __future__ import annotations

import functools

import torch
import torch.nn.functional as F

from app.scores.constants import constant
from app.scores.masks import SSIM_WINDOW, window_centres

WINDOW_SIZE = SSIM_WINDOW
SIGMA = 1.5
K1, K2 = 0.01, 0.03
STRIP_ROWS = 64  # output rows per strip on the CPU (see _strips)


def gaussian_window(
    size: int = WINDOW_SIZE, sigma: float = SIGMA, *, dtype: torch.dtype = torch.float32
) -> torch.Tensor:
    """Normalised 1-D Gaussian of ``size`` taps, as ``scipy.ndimage.gaussian_filter`` builds it."""
    radius = size // 2
    offsets = torch.arange(-radius, radius + 1, dtype=torch.float64)
    weights = torch.exp(-(offsets**2) / (2 * sigma**2))
    return (weights / weights.sum()).to(dtype)


def _filter_valid(stack: torch.Tensor, window: torch.Tensor) -> torch.Tensor:
    """Separable valid-region filter of every channel: ``(N, K, H, W) -> (N, K, H-10, W-10)``."""
    k = stack.shape[1]
    size = window.numel()
    horizontal = window.view(1, 1, 1, size).expand(k, 1, 1, size)
    vertical = window.view(1, 1, size, 1).expand(k, 1, size, 1)
    return F.conv2d(F.conv2d(stack, horizontal, groups=k), vertical, groups=k)


def _strips(rows: int, device: torch.device) -> list[tuple[int, int]]:
    """Output row ranges. On the CPU, strips of ``STRIP_ROWS`` keep each strip's moment planes in
    cache (a whole 1024 px image's 15 planes do not fit; docs/benchmarks.md has the effect); on
    a GPU, one strip (fewer kernel launches)."""
    step = rows if device.type == "cuda" else STRIP_ROWS
    return [(r0, min(r0 + step, rows)) for r0 in range(0, rows, step)]


def reference_moments(x: torch.Tensor, window: torch.Tensor | None = None) -> torch.Tensor:
    """Filtered local moments of a reference alone: ``(N, C, H, W) -> (N, 2C, H-10, W-10)``.

    Channels are ``mu_x`` then ``E[x^2]``. A reference-feature cache keeps these so that a
    candidate scored against a cached reference filters only its own three moments.
    """
    window = _window_for(x, window)
    x = x.float()
    margin = window.numel() - 1
    n, c, h, w = x.shape
    out = x.new_empty(n, 2 * c, h - margin, w - margin)
    for r0, r1 in _strips(h - margin, x.device):
        xs = x[:, :, r0 : r1 + margin]
        out[:, :, r0:r1] = _filter_valid(torch.cat([xs, xs * xs], dim=1), window)
    return out


def ssim_map(
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    data_range: float = 1.0,
    window: torch.Tensor | None = None,
    x_moments: torch.Tensor | None = None,
) -> torch.Tensor:
    """Local SSIM per channel: ``(N, C, H, W) x2 -> (N, C, H-10, W-10)`` in float32.

    ``x_moments``, if given, is ``reference_moments(x)`` computed earlier (same result).
    Raises ``ValueError`` when the shapes differ or a side is under the window size.
    """
    if x.shape != y.shape or x.dim() != 4:
        raise ValueError(f"need two (N, C, H, W) tensors of one shape, got {x.shape}, {y.shape}")
    window = _window_for(x, window)
    size = window.numel()
    if min(x.shape[-2:]) < size:
        raise ValueError(f"SSIM needs sides of at least {size} px, got {tuple(x.shape[-2:])}")
    x = x.float()
    y = y.float()
    n, c, h, w = x.shape
    margin = size - 1
    out = x.new_empty(n, c, h - margin, w - margin)
    for r0, r1 in _strips(h - margin, x.device):
        xs, ys = x[:, :, r0 : r1 + margin], y[:, :, r0 : r1 + margin]
        if x_moments is None:
            stack = torch.cat([xs, ys, xs * xs, ys * ys, xs * ys], dim=1)
            mu_x, mu_y, xx, yy, xy = torch.split(_filter_valid(stack, window), c, dim=1)
        else:
            mu_x, xx = torch.split(x_moments[:, :, r0:r1].float(), c, dim=1)
            stack = torch.cat([ys, ys * ys, xs * ys], dim=1)
            mu_y, yy, xy = torch.split(_filter_valid(stack, window), c, dim=1)
        out[:, :, r0:r1] = _ssim_from_moments(mu_x, mu_y, xx, yy, xy, data_range)
    return out


def _ssim_from_moments(
    mu_x: torch.Tensor,
    mu_y: torch.Tensor,
    xx: torch.Tensor,
    yy: torch.Tensor,
    xy: torch.Tensor,
    data_range: float,
) -> torch.Tensor:
    """The SSIM formula from filtered E[x], E[y], E[x^2], E[y^2], E[xy]."""
    c1 = (K1 * data_range) ** 2
    c2 = (K2 * data_range) ** 2
    mu_xy = mu_x * mu_y
    mu_xx = mu_x * mu_x
    mu_yy = mu_y * mu_y
    numerator = (2 * mu_xy + c1) * (2 * (xy - mu_xy) + c2)
    denominator = (mu_xx + mu_yy + c1) * ((xx - mu_xx) + (yy - mu_yy) + c2)
    result: torch.Tensor = numerator / denominator
    return result


def _window_for(x: torch.Tensor, window: torch.Tensor | None) -> torch.Tensor:
    if window is None:
        return constant(_default_taps(), torch.float32, x.device)
    return window.to(device=x.device, dtype=torch.float32)


@functools.cache
def _default_taps() -> tuple[float, ...]:
    return tuple(gaussian_window(dtype=torch.float64).tolist())


def ssim(
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    data_range: float = 1.0,
    window: torch.Tensor | None = None,
    x_moments: torch.Tensor | None = None,
    mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """Mean SSIM per pair: ``(N, C, H, W) x2 -> (N,)``; 1 for identical images.

    ``mask`` ``(N, 1, H, W)`` (a region of interest, ``app.scores.masks``): average only over
    the window positions whose centre lies inside it."""
    local = ssim_map(x, y, data_range=data_range, window=window, x_moments=x_moments)
    if mask is None:
        return local.flatten(1).mean(1)
    inside = window_centres(mask, window_size=x.shape[-1] - local.shape[-1] + 1).to(local.dtype)
    total = local.mul(inside).sum(dim=(1, 2, 3))
    return total / (inside.sum(dim=(1, 2, 3)) * local.shape[1])
