"""Pixel modes: one rule per mode Pillow opens, for images (and, in ``app.scores.masks``, the
rule for masks); any other mode is refused (``UnsupportedImageFormat``, 415) with its name,
never a 500.

Images (scored as RGB in [0, 1]; ``decode`` applies these):

* ``1``, ``L``: grey, replicated to three channels. ``I;16``, ``I;16L``, ``I;16B``, ``I;16N``
  and ``I``: grey divided by 65535 (16-bit range). ``F``: grey taken as [0, 1], clipped.
* ``RGB``; ``RGBX`` (padding dropped); ``P`` (its palette's colours); ``CMYK``, ``YCbCr``,
  ``LAB`` and ``HSV`` converted to RGB by Pillow.
* With transparency (``LA``, ``RGBA``, ``PA``, premultiplied ``La`` and ``RGBa``, or a
  transparent colour or palette entry): composited over white.

Masks have their own rule, with the rest of what a mask is, in ``app.scores.masks``.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

from app.errors import UnsupportedImageFormat

WIDE_GREY = frozenset({"I;16", "I;16L", "I;16B", "I;16N", "I"})  # divided by 65535
EIGHT_BIT = frozenset({"L", "LA", "RGB", "RGBA"})  # what ``eight_bit`` gives
# Modes Pillow converts to RGB (or RGBA) itself.
_CONVERTED = frozenset({"1", "P", "PA", "RGBX", "RGBa", "CMYK", "YCbCr", "LAB", "HSV"})
_SUPPORTED_TEXT = "8-bit grey, RGB or RGBA"


def unsupported(mode: str, what: str, use: str = "an image") -> UnsupportedImageFormat:
    return UnsupportedImageFormat(
        f"the {what} uses the pixel mode {mode!r}, which simscore cannot read as {use}; "
        f"save it as {_SUPPORTED_TEXT}"
    )


def eight_bit(image: Image.Image, what: str) -> Image.Image:
    """``image`` as ``L`` or ``RGB``, or ``LA`` or ``RGBA`` when it has transparency (a
    transparent colour becomes alpha); not for 16-bit and float modes (``WIDE_GREY``, ``F``)."""
    mode = image.mode
    if mode == "La":
        image, mode = _straight_alpha(image), "LA"
    transparent = image.has_transparency_data
    if mode in ("LA", "RGBA") or (mode in ("L", "RGB") and not transparent):
        return image
    if mode not in _CONVERTED and mode not in ("L", "RGB"):
        raise unsupported(mode, what)
    target = "RGBA" if transparent else "L" if mode == "1" else "RGB"
    try:
        return image.convert(target)
    except (ValueError, OSError) as exc:  # a conversion this Pillow lacks
        raise unsupported(mode, what) from exc


def _straight_alpha(image: Image.Image) -> Image.Image:
    """A premultiplied ``La`` image as ``LA`` (Pillow has no conversion for ``La``)."""
    pixels = np.asarray(image, dtype=np.uint16)
    grey, alpha = pixels[..., 0], pixels[..., 1]
    straight = np.where(
        alpha > 0, np.minimum(255, (grey * 255 + alpha // 2) // np.maximum(alpha, 1)), 0
    )
    return Image.fromarray(np.stack([straight, alpha], axis=2).astype(np.uint8), "LA")
