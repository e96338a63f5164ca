"""Pixel modes: one rule per mode Pillow opens, for images and for masks; any other mode is
refused (``UnsupportedImageFormat``, 415) with its name, never a 500.

Images (scored as RGB in [0, 1]; ``decode`` applies these):

* ``1``, ``L``: grey, replicated to three channels. ``I;16``, ``I;16L``, ``I;16B``, ``I;16N``
  and ``I``: grey divided by 65535 (16-bit range). ``F``: grey taken as [0, 1], clipped.
* ``RGB``; ``RGBX`` (padding dropped); ``P`` (its palette's colours); ``CMYK``, ``YCbCr``,
  ``LAB`` and ``HSV`` converted to RGB by Pillow.
* With transparency (``LA``, ``RGBA``, ``PA``, premultiplied ``La`` and ``RGBa``, or a
  transparent colour or palette entry): composited over white.

Masks (a pixel is compared where the rule gives nonzero):

* Modes with alpha (``LA``, ``La``, ``PA``, ``RGBA``, ``RGBa``), and images with a transparent
  colour or palette entry: the alpha (a transparent pixel is not compared).
* Otherwise the luminance: the value of ``1``, ``L``, ``I``, ``I;16*`` and ``F`` (NaN counts as
  zero); any colour channel of ``RGB``, ``RGBX``, ``P`` and ``CMYK`` (after Pillow's conversion to
  RGB: luminance is zero exactly when all three are); the Y band of ``YCbCr``, the L* band of
  ``LAB``, the V band of ``HSV``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import NDArray
from PIL import Image

from app.errors import UnsupportedImageFormat

WIDE_GREY = frozenset({"I;16", "I;16L", "I;16B", "I;16N", "I"})  # divided by 65535
EIGHT_BIT = frozenset({"L", "LA", "RGB", "RGBA"})  # what ``eight_bit`` gives
# Modes Pillow converts to RGB (or RGBA) itself.
_CONVERTED = frozenset({"1", "P", "PA", "RGBX", "RGBa", "CMYK", "YCbCr", "LAB", "HSV"})
_ALPHA_BAND = {"LA": "A", "La": "a", "PA": "A", "RGBA": "A", "RGBa": "a"}
_LUMA_BAND = {"YCbCr": "Y", "LAB": "L", "HSV": "V"}
_VALUE_MODES = frozenset({"1", "L", *WIDE_GREY})
_COLOUR_MODES = frozenset({"RGB", "RGBX"})
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


def selection(image: Image.Image, what: str) -> NDArray[np.bool_]:
    """The pixels a mask selects, ``(H, W)`` bool (the module docstring's rule for its mode)."""
    selected = _selected(image)
    if selected is None:
        raise unsupported(image.mode, what, "a mask")
    return np.asarray(selected, dtype=np.bool_)


def _selected(image: Image.Image) -> Any:
    """The selection as a numpy array of any dtype (None: no rule for the mode)."""
    mode = image.mode
    if mode in _ALPHA_BAND:
        return np.asarray(image.getchannel(_ALPHA_BAND[mode])) > 0
    transparent = image.info.get("transparency")
    if transparent is not None and mode in WIDE_GREY and isinstance(transparent, int):
        return np.asarray(image) != transparent
    if transparent is not None and mode in ("1", "L", "P", "RGB"):
        return np.asarray(image.convert("RGBA").getchannel("A")) > 0
    if mode in _LUMA_BAND:
        return np.asarray(image.getchannel(_LUMA_BAND[mode])) > 0
    if mode in _VALUE_MODES:
        return np.asarray(image) != 0
    if mode == "F":
        values = np.asarray(image)
        return (values != 0) & ~np.isnan(values)
    if mode in _COLOUR_MODES:
        return np.asarray(image)[..., :3].any(axis=2)
    if mode in ("P", "CMYK"):
        return np.asarray(image.convert("RGB")).any(axis=2)
    return None


def _straight_alpha(image: Image.Image) -> Image.Image:
    """A premultiplied ``La`` image as ``LA`` (Pillow has no conversion for ``La``)."""
    pixels = np.asarray(image, dtype=np.uint16)
    grey, alpha = pixels[..., 0], pixels[..., 1]
    straight = np.where(
        alpha > 0, np.minimum(255, (grey * 255 + alpha // 2) // np.maximum(alpha, 1)), 0
    )
    return Image.fromarray(np.stack([straight, alpha], axis=2).astype(np.uint8), "LA")
