"""Multi-scale SSIM (Wang, Simoncelli and Bovik, "Multiscale structural similarity for image
quality assessment", Asilomar 2003), as ``pytorch_msssim`` 1.0.0 computes it with
``data_range=1`` (its ``ms_ssim``; equal to it in float64 within 1e-5, tests/scores).

At each of five scales ``j`` (the image, then four times halved), per channel, with the SSIM
window of ``app.scores.ssim`` (11 taps, sigma 1.5, valid positions only), ``C1 = (0.01 L)^2``,
``C2 = (0.03 L)^2``:

    cs_j  = mean (2 sigma_xy + C2) / (sigma_x^2 + sigma_y^2 + C2)
    ssim_5 = mean (2 mu_x mu_y + C1) / (mu_x^2 + mu_y^2 + C1) * (the cs map at scale 5)
    MS-SSIM = mean_channels  prod_{j<5} relu(cs_j)^w_j  *  relu(ssim_5)^w_5
    w = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)

Halving is ``avg_pool2d(kernel 2, stride 2, padding = side % 2)`` with the padding counted as
zeros (PyTorch's default), so an odd side keeps its last row or column: ``(s + 1) // 2``.
Identical images give 1. The window must fit at the fifth scale: the shorter side must be
above ``(11 - 1) * 2^4 = 160`` px (``MIN_SIDE`` = 161); smaller images raise
``ImageTooSmallForScore`` naming it (``check_size``).

Masks (``(N, 1, H, W)``, nonzero inside) are carried down the scales with the same pooling as
the images; at each scale a window position counts when the pooled mask is above 0 at its
centre, i.e. when its cell of ``2^j x 2^j`` pixels holds a pixel of the mask
(``scale_centres``), and each mean above is over those positions. A full mask gives the
unmasked value. A pair whose mask has no position at some scale (a mask within about 80 px of
the borders) gets NaN: callers refuse such masks first.

The five moments of the three channels of every pair are filtered together (side by side in
each row) by banded products (``app.scores.separable``), in strips of rows, in float32 in
every precision mode; the means are taken in float64. A pair's value does not depend on its
batch, and equal images give exactly 1 (tests/scores/test_ms_ssim.py).
"""

from __future__ import annotations

import functools
import itertools

import torch
import torch.nn.functional as F

from app.errors import ImageTooSmallForScore
from app.scores import masks
from app.scores.separable import (
    BLOCK_ROWS,
    band_matrix,
    filter_columns,
    filter_rows,
    fp32_math,
    one_blas_thread,
)
from app.scores.ssim import K1, K2, SIGMA, WINDOW_SIZE

WEIGHTS = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)
SCALES = len(WEIGHTS)
MIN_SIDE = (WINDOW_SIZE - 1) * 2 ** (SCALES - 1) + 1  # 161
_MARGIN = WINDOW_SIZE // 2
# Output rows of a scale filtered at a time, a multiple of BLOCK_ROWS (so the strips cut the
# rows where the blocks do). Measured on 16 pairs at 512 px, one thread: 16 to 128 rows take
# 0.29x to 0.37x pytorch_msssim's time, no strips 0.49x.
STRIP_ROWS = 8 * BLOCK_ROWS


def check_size(height: int, width: int) -> None:
    """Raise ``ImageTooSmallForScore`` unless both sides are at least ``MIN_SIDE`` (161) px."""
    if min(height, width) < MIN_SIDE:
        raise ImageTooSmallForScore(
            f"ms_ssim needs both sides of at least {MIN_SIDE} px (its 11 px window must fit "
            f"after four halvings); the image is {width}x{height} px",
            score="ms_ssim",
            minimum_px=MIN_SIDE,
        )


def _halve(x: torch.Tensor) -> torch.Tensor:
    """``pytorch_msssim``'s downsampling: 2x2 average, odd sides padded with counted zeros."""
    padding = [side % 2 for side in x.shape[-2:]]
    return F.avg_pool2d(x, kernel_size=2, padding=padding)


def scale_centres(mask: torch.Tensor) -> list[torch.Tensor]:
    """MS-SSIM's view of a mask at each of its five scales (``app.scores.masks.scale_centres``
    with this module's downsampling): ``(N, 1, H, W)`` -> five ``(N, 1, h_j - 10, w_j - 10)``
    bool tensors."""
    return masks.scale_centres(mask, _halve, scales=SCALES, window_size=WINDOW_SIZE)


def window_taps() -> torch.Tensor:
    """The 11 Gaussian taps (sigma 1.5) computed in float32 as ``pytorch_msssim`` computes them
    (``_fspecial_gauss_1d``); they differ from ``app.scores.ssim.gaussian_window``'s rounding of
    the float64 taps in the last bit, which moves MS-SSIM by up to about 5e-7."""
    offsets = torch.arange(WINDOW_SIZE, dtype=torch.float32, device="cpu") - WINDOW_SIZE // 2
    taps = torch.exp(-(offsets**2) / (2 * SIGMA**2))
    return taps / taps.sum()


@functools.cache
def _band(device: torch.device) -> torch.Tensor:
    with torch.inference_mode(False):
        return band_matrix(window_taps().to(device))


def _strip_maps(
    x: torch.Tensor, y: torch.Tensor, rows: slice, data_range: float, last: bool
) -> torch.Tensor:
    """The cs map (at the last scale the SSIM map) for output rows ``rows``: ``(r, C, h, w)``
    references (``r`` = 1: one shared by every candidate, or one per candidate) and ``(n, C, h,
    w)`` candidates -> ``(rows, n, C, w - 10)``. The moment planes (``2 r C`` of the
    references, ``3 n C`` of the candidates and the products) lie side by side in each row,
    each ``padded`` wide (a multiple of ``BLOCK_ROWS``), so both filter passes are one product
    each and equal planes give equal bits wherever they lie (``app.scores.separable``): a shared
    reference is filtered once, and a pair's map is the same whichever way it came.
    """
    refs, (count, channels, _, width) = x.shape[0], y.shape
    valid = width - 2 * _MARGIN
    padded = -(-valid // BLOCK_ROWS) * BLOCK_ROWS
    source = slice(rows.start, rows.stop + 2 * _MARGIN)
    rows_x, rows_y = x[:, :, source].permute(2, 0, 1, 3), y[:, :, source].permute(2, 0, 1, 3)
    height = rows_x.shape[0]
    stack = x.new_empty(height, 2 * refs + 3 * count, channels, padded + 2 * _MARGIN)
    stack[..., width:] = 0.0  # columns past the image: filtered, then cut off
    bounds = [0, refs, 2 * refs, 2 * refs + count, 2 * refs + 2 * count, 2 * refs + 3 * count]
    planes = [stack[:, a:b, :, :width] for a, b in itertools.pairwise(bounds)]
    planes[0].copy_(rows_x)
    torch.mul(rows_x, rows_x, out=planes[1])
    planes[2].copy_(rows_y)
    torch.mul(rows_y, rows_y, out=planes[3])
    torch.mul(rows_x, rows_y, out=planes[4])
    band = _band(x.device)
    across = filter_columns(stack.view(-1, padded + 2 * _MARGIN), band)
    down = filter_rows(across.view(height, -1), band)
    moments = down.view(height - 2 * _MARGIN, -1, channels, padded)[..., :valid]
    mu_x, xx, mu_y, yy, xy = (moments[:, a:b] for a, b in itertools.pairwise(bounds))
    c1, c2 = (K1 * data_range) ** 2, (K2 * data_range) ** 2
    mu_xy, mu_xx, mu_yy = mu_x * mu_y, mu_x * mu_x, mu_y * mu_y
    cs = (2 * (xy - mu_xy) + c2) / ((xx - mu_xx) + (yy - mu_yy) + c2)
    if not last:
        return cs
    return cs.mul_((2 * mu_xy + c1) / (mu_xx + mu_yy + c1))


def _scale_means(
    x: torch.Tensor, y: torch.Tensor, data_range: float, last: bool, centres: torch.Tensor | None
) -> torch.Tensor:
    """Each pair's and channel's float64 mean of the scale's map over its positions (or those
    in ``centres`` ``(n, 1, h, w)``): ``(n, C, H, W)`` images -> ``(n, C)``.

    Strips of ``STRIP_ROWS`` output rows keep the working set small whatever the batch; each
    strip's sums run along a row first, then (serially, a small tensor) down the strip, so a
    pair's sums take the same order whatever its batch."""
    count, channels, height, width = y.shape
    valid = height - 2 * _MARGIN
    inside = None if centres is None else centres.permute(2, 0, 1, 3)  # (h, n, 1, w)
    total = x.new_zeros(count, channels, dtype=torch.float64)
    for start in range(0, valid, STRIP_ROWS):
        rows = slice(start, min(start + STRIP_ROWS, valid))
        values = _strip_maps(x, y, rows, data_range, last)
        if inside is not None:
            values = values.where(inside[rows], 0.0)
        total += values.sum(dim=3, dtype=torch.float64).sum(dim=0)
    if inside is None:
        return total / (valid * (width - 2 * _MARGIN))
    return total / inside.sum(dim=(0, 3))


def _pairs(
    x: torch.Tensor, y: torch.Tensor, data_range: float, centres: list[torch.Tensor] | None
) -> torch.Tensor:
    """MS-SSIM of the pairs of ``x`` and ``y``, all at once: ``(n, C, H, W)`` x2, or one
    shared reference ``(1, C, H, W)`` and ``(n, C, H, W)`` candidates -> ``(n,)``."""
    x, y = x.float(), y.float()
    factors = []
    for scale, weight in enumerate(WEIGHTS):
        if scale:
            x, y = _halve(x), _halve(y)
        last = scale == SCALES - 1
        means = _scale_means(x, y, data_range, last, None if centres is None else centres[scale])
        factors.append(means.clamp_min(0.0).pow(weight))
    return torch.stack(factors).prod(0).mean(1)


def ms_ssim(
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    data_range: float = 1.0,
    mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """MS-SSIM per pair: ``(N, C, H, W)`` x2 in [0, data_range] -> ``(N,)`` float64 in [0, 1];
    1 for identical images. ``mask`` ``(N, 1, H, W)``: means over the window positions inside
    it, scale by scale (see the module docstring).

    Raises ``ImageTooSmallForScore`` when a side is under 161 px, ``ValueError`` when the
    shapes differ or are not 4-D.
    """
    if x.shape != y.shape or x.dim() != 4:
        raise ValueError(f"need two (N, C, H, W) tensors of one shape, got {x.shape}, {y.shape}")
    check_size(*x.shape[-2:])
    centres = None if mask is None else scale_centres(mask)
    with fp32_math(x.device), one_blas_thread(x.device):
        return _pairs(x, y, data_range, centres)


def ms_ssim_against(
    reference: torch.Tensor,
    candidates: torch.Tensor,
    *,
    data_range: float = 1.0,
    mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """MS-SSIM of several candidates against one reference, the reference's share done once
    (its pyramid and the filtering of its two moment planes): ``(1, C, H, W)`` and ``(n, C, H,
    W)`` -> ``(n,)``, each equal to ``ms_ssim`` of the pair (bit for bit: equal planes are
    filtered to equal bits wherever they lie). ``mask`` ``(n, 1, H, W)``: one per candidate.

    Raises as ``ms_ssim`` does, and ``ValueError`` for a reference that is not one image of the
    candidates' size."""
    if (
        reference.dim() != 4
        or reference.shape[0] != 1
        or reference.shape[1:] != candidates.shape[1:]
    ):
        raise ValueError(
            "need a (1, C, H, W) reference and (n, C, H, W) candidates of its size, got "
            f"{tuple(reference.shape)}, {tuple(candidates.shape)}"
        )
    check_size(*candidates.shape[-2:])
    centres = None if mask is None else scale_centres(mask)
    with fp32_math(candidates.device), one_blas_thread(candidates.device):
        return _pairs(reference, candidates, data_range, centres)
