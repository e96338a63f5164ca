"""FLIP error maps as PNG images, coloured as NVIDIA's reference tool colours them (pure).

The map is ``app.scores.flip.flip_map``'s per-pixel error, in [0, 1] at the compared size
(0: no visible difference). Each value ``e`` gets entry ``int(255 e + 0.5)`` of the magma
colour map (van der Walt and Smith, matplotlib 2.0; the map the FLIP paper and the reference
tool show), exactly as ``FLIP::image::colorMap`` indexes ``FLIP::MapMagma``. ``MAGMA_HEX``
holds the tool's 256 entries as the 8-bit colours its PNG writer stores
(``uint8(255 c + 0.5)`` of each float entry in ``FLIP.h``), so a map equals the tool's PNG for
the same error values. Colour range: fixed [0, 1] (``MAP_RANGE``); values outside are clamped,
NaN is drawn as 0. Dark (almost black) is 0, pale yellow is 1. No legend: the PNG's size is
the compared size.
"""

from __future__ import annotations

import functools
import io

import numpy as np
import numpy.typing as npt
import torch
from PIL import Image

MAP_KIND = "flip"
MAP_RANGE = (0.0, 1.0)

# FLIP::MapMagma (flip-evaluator 1.7), 256 entries of 8-bit sRGB, 6 hex digits each.
MAGMA_HEX = (
    "00000401000501010601010802010902020b02020d03030f03031204041405041606051806051a"
    "07061c08071e0907200a08220b09240c09260d0a290e0b2b100b2d110c2f120d31130d34140e36"
    "150e38160f3b180f3d19103f1a10421c10441d11471e114920114b21114e221150241253251255"
    "27125829115a2a115c2c115f2d11612f116331116533106734106936106b38106c390f6e3b0f70"
    "3d0f713f0f72400f74420f75440f764510774710784910784a10794c117a4e117b4f127b51127c"
    "52137c54137d56147d57157e59157e5a167e5c167f5d177f5f187f601880621980641a80651a80"
    "671b80681c816a1c816b1d816d1d816e1e81701f81721f81732081752181762181782281792282"
    "7b23827c23827e24828025828125818326818426818627818827818928818b29818c29818e2a81"
    "902a81912b81932b80942c80962c80982d80992d809b2e7f9c2e7f9e2f7fa02f7fa1307ea3307e"
    "a5317ea6317da8327daa337dab337cad347cae347bb0357bb2357bb3367ab5367ab73779b83779"
    "ba3878bc3978bd3977bf3a77c03a76c23b75c43c75c53c74c73d73c83e73ca3e72cc3f71cd4071"
    "cf4070d0416fd2426fd3436ed5446dd6456cd8456cd9466bdb476adc4869de4968df4a68e04c67"
    "e24d66e34e65e44f64e55064e75263e85362e95462ea5661eb5760ec5860ed5a5fee5b5eef5d5e"
    "f05f5ef1605df2625df2645cf3655cf4675cf4695cf56b5cf66c5cf66e5cf7705cf7725cf8745c"
    "f8765cf9785df9795df97b5dfa7d5efa7f5efa815ffb835ffb8560fb8761fc8961fc8a62fc8c63"
    "fc8e64fc9065fd9266fd9467fd9668fd9869fd9a6afd9b6bfe9d6cfe9f6dfea16efea36ffea571"
    "fea772fea973feaa74feac76feae77feb078feb27afeb47bfeb67cfeb77efeb97ffebb81febd82"
    "febf84fec185fec287fec488fec68afec88cfeca8dfecc8ffecd90fecf92fed194fed395fed597"
    "fed799fed89afdda9cfddc9efddea0fde0a1fde2a3fde3a5fde5a7fde7a9fde9aafdebacfcecae"
    "fceeb0fcf0b2fcf2b4fcf4b6fcf6b8fcf7b9fcf9bbfcfbbdfcfdbf"
)

Rgb = npt.NDArray[np.uint8]


@functools.cache
def magma_lut() -> Rgb:
    """The 256-entry magma table, ``(256, 3)`` uint8 (read-only)."""
    lut = np.frombuffer(bytes.fromhex(MAGMA_HEX), dtype=np.uint8).reshape(256, 3).copy()
    lut.flags.writeable = False
    return lut


def colorize(error_map: torch.Tensor) -> Rgb:
    """``(H, W)`` FLIP errors -> ``(H, W, 3)`` uint8 magma: entry ``int(255 e + 0.5)`` in
    float32 arithmetic, ``e`` clamped to [0, 1] (NaN: 0)."""
    values = torch.nan_to_num(error_map.detach().float(), nan=0.0).clamp_(*MAP_RANGE)
    indices = values.mul_(255.0).add_(0.5).floor_().to(torch.int64).cpu().numpy()
    rgb: Rgb = magma_lut()[indices]
    return rgb


def flip_map_png(error_map: torch.Tensor) -> bytes:
    """The PNG of one FLIP error map, ``(H, W)``, ``(1, H, W)`` or ``(1, 1, H, W)``; it is
    ``W x H`` px. Raises ``ValueError`` for another shape."""
    if error_map.dim() < 2 or any(side != 1 for side in error_map.shape[:-2]):
        raise ValueError(f"need one (H, W) error map, got shape {tuple(error_map.shape)}")
    rgb = colorize(error_map.reshape(error_map.shape[-2:]))
    buffer = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(rgb)).save(buffer, "PNG", compress_level=6)
    return buffer.getvalue()


__all__ = ["MAGMA_HEX", "MAP_KIND", "MAP_RANGE", "colorize", "flip_map_png", "magma_lut"]
