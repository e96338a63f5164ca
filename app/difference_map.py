"""Difference maps: two images -> one heat map PNG at the compared size (pure, no web code).

Two kinds, both ``(3, H, W)`` float tensors in [0, 1] of one shape in, an ``(H, W)`` map out:

* ``ssim``: the local SSIM of ``app.scores.ssim.ssim_map`` (11x11 Gaussian window, sigma 1.5),
  averaged over the three channels. That map only exists where the window fits, an
  ``(H-10, W-10)`` grid whose mean is the ``ssim`` score; it is **upsampled** bilinearly
  (``align_corners=True``) to ``(H, W)`` so that the 5 px border the valid window leaves out is
  covered: the first and last valid windows land on the image's corners, a stretch by
  ``(H-1)/(H-11)`` and ``(W-1)/(W-11)``. Colour range: **fixed [0, 1]**; local SSIM below 0
  (anti-correlated structure, rare) is drawn as 0. 1 (identical) is yellow, 0 dark purple.
* ``abs``: ``mean_c |x_c - y_c|``, the absolute pixel difference averaged over the channels.
  Colour range: **fixed [0, 1]**; 0 (identical) is dark purple, 1 (black vs white) yellow.

Colour map: viridis (van der Walt and Smith, matplotlib 2.0), perceptually uniform and readable
with the common colour-vision deficiencies. ``VIRIDIS_ANCHORS`` holds 33 of matplotlib's 256
entries (every 8th and the last); linear interpolation between them rebuilds the 256-entry table
to within 2/255 of matplotlib's. A value ``v`` in ``[lo, hi]`` gets entry
``round(255 (v - lo) / (hi - lo))``. The PNG has no legend so that its size is the compared
size; the range is fixed and documented (docs/dashboard.md), and ``/compare/map`` repeats it in
its ``X-Map-Range`` header.
"""

from __future__ import annotations

import functools
import io

import numpy as np
import numpy.typing as npt
import torch
import torch.nn.functional as F
from PIL import Image

from app.scores.ssim import WINDOW_SIZE, ssim_map
from app.vocabulary import MAP_KINDS, MAP_RANGES, MapKind

# matplotlib's viridis entries 0, 8, 16, ..., 248 and 255, as 8-bit sRGB hex.
VIRIDIS_ANCHORS: tuple[str, ...] = (
    "440154", "470d60", "48186a", "482374", "472d7b", "453781", "424086", "3e4989",
    "3b528b", "375b8d", "33638d", "2f6b8e", "2c728e", "297a8e", "26828e", "23898e",
    "21918c", "1f988b", "1fa088", "22a785", "28ae80", "32b67a", "3fbc73", "4ec36b",
    "5ec962", "70cf57", "84d44b", "98d83e", "addc30", "c2df23", "d8e219", "ece51b",
    "fde725",
)  # fmt: skip
_ANCHOR_INDICES = (*range(0, 256, 8), 255)

Rgb = npt.NDArray[np.uint8]


@functools.cache
def viridis_lut() -> Rgb:
    """The 256-entry viridis table, ``(256, 3)`` uint8, rebuilt from ``VIRIDIS_ANCHORS``."""
    anchors = np.array(
        [[int(h[i : i + 2], 16) for i in (0, 2, 4)] for h in VIRIDIS_ANCHORS], dtype=np.float64
    )
    positions = np.arange(256, dtype=np.float64)
    table = np.stack(
        [np.interp(positions, _ANCHOR_INDICES, anchors[:, c]) for c in range(3)], axis=1
    )
    lut: Rgb = np.rint(table).astype(np.uint8)
    lut.flags.writeable = False
    return lut


def _check_pair(x: torch.Tensor, y: torch.Tensor) -> None:
    if x.shape != y.shape or x.dim() != 3 or x.shape[0] != 3:
        raise ValueError(
            f"need two (3, H, W) tensors of one shape, got {tuple(x.shape)}, {tuple(y.shape)}"
        )


def local_ssim(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Channel-mean local SSIM upsampled to the image: ``(3, H, W) x2 -> (H, W)`` float32.

    ``m = mean_c ssim_map(x, y)`` has shape ``(H-10, W-10)``; it is resized bilinearly with
    aligned corners to ``(H, W)``. Sides must be at least 11 px (the window).
    """
    _check_pair(x, y)
    height, width = x.shape[1:]
    if min(height, width) < WINDOW_SIZE:
        raise ValueError(f"the SSIM map needs sides of at least {WINDOW_SIZE} px")
    valid = ssim_map(x.unsqueeze(0), y.unsqueeze(0)).mean(dim=1, keepdim=True)
    full = F.interpolate(valid, size=(height, width), mode="bilinear", align_corners=True)
    return full[0, 0]


def abs_difference(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """``mean_c |x_c - y_c|``: ``(3, H, W) x2 -> (H, W)`` float32 in [0, 1]."""
    _check_pair(x, y)
    return (x.float() - y.float()).abs_().mean(dim=0)


def difference_values(x: torch.Tensor, y: torch.Tensor, kind: MapKind) -> torch.Tensor:
    """The ``(H, W)`` map of ``kind`` (see the module docstring)."""
    if kind == "ssim":
        return local_ssim(x, y)
    if kind == "abs":
        return abs_difference(x, y)
    raise ValueError(f"kind must be one of {', '.join(MAP_KINDS)}, not {kind!r}")


def colorize(values: torch.Tensor, lo: float, hi: float) -> Rgb:
    """``(H, W)`` values -> ``(H, W, 3)`` uint8 viridis; ``lo`` and below is the first colour,
    ``hi`` and above the last, NaN the first."""
    if not hi > lo:
        raise ValueError(f"need lo < hi, got {lo}, {hi}")
    scaled = torch.nan_to_num((values.float() - lo) / (hi - lo), nan=0.0).clamp_(0.0, 1.0)
    indices = scaled.mul_(255.0).round_().to(torch.int64).cpu().numpy()
    rgb: Rgb = viridis_lut()[indices]
    return rgb


def encode_png(rgb: Rgb) -> bytes:
    """``(H, W, 3)`` uint8 -> PNG bytes."""
    buffer = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(rgb)).save(buffer, "PNG", compress_level=6)
    return buffer.getvalue()


def difference_map_png(x: torch.Tensor, y: torch.Tensor, kind: MapKind = "ssim") -> bytes:
    """The heat map PNG of ``kind`` for a pair of ``(3, H, W)`` images; it is ``W x H`` px."""
    with torch.inference_mode():
        values = difference_values(x, y, kind)
    return encode_png(colorize(values, *MAP_RANGES[kind]))


__all__ = [
    "VIRIDIS_ANCHORS",
    "abs_difference",
    "colorize",
    "difference_map_png",
    "difference_values",
    "encode_png",
    "local_ssim",
    "viridis_lut",
]
