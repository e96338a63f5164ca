"""Mean squared error and PSNR on images in [0, 1].

    mse(x, y)  = mean_{c,h,w} (x - y)^2
    psnr(x, y) = 10 log10(1 / mse)      (data range 1)

With a region of interest m, the mean is over the pixels (and channels) inside it.

Identical images have mse 0 and no finite PSNR: ``psnr`` returns ``inf`` there, and the API
reports it as ``null`` because JSON has no infinity.
"""

from __future__ import annotations

import torch


def mse(x: torch.Tensor, y: torch.Tensor, *, mask: torch.Tensor | None = None) -> torch.Tensor:
    """``(N, C, H, W) x2 -> (N,)``, accumulated in float64 for exact small differences;
    ``mask`` ``(N, 1, H, W)`` (nonzero: compare here) restricts the mean to its pixels."""
    if x.shape != y.shape:
        raise ValueError(f"shapes differ: {tuple(x.shape)} vs {tuple(y.shape)}")
    diff = x.float() - y.float()
    squared = diff.mul_(diff)
    if mask is None:
        return _per_pair_sum(squared).div_(diff[0].numel())
    inside = mask.bool()
    total = _per_pair_sum(squared.mul_(inside))
    return total.div_(inside.sum(dim=(1, 2, 3)).double().mul_(x.shape[1]))


def _per_pair_sum(values: torch.Tensor) -> torch.Tensor:
    """Each pair's float64 sum on its own: one reduction over a whole batch splits its work
    across threads differently for different batch sizes, which moves the last bit."""
    return torch.stack([pair.sum(dtype=torch.float64) for pair in values])


def psnr(mse_values: torch.Tensor, data_range: float = 1.0) -> torch.Tensor:
    """PSNR in dB from per-pair MSE values; ``inf`` where mse is 0."""
    return 10.0 * torch.log10(data_range**2 / mse_values)
