"""Uploaded bytes -> RGB float tensors in [0, 1] at the size they are scored at.

``formats`` screens the bytes, ``decode`` decodes them within a pixel budget and no larger than
needed, ``prepare`` applies the size policy that pairs a candidate with its reference.
"""

from app.imaging.decode import Decoded, decode_image, decode_plane, quiet_pillow
from app.imaging.formats import SUPPORTED_FORMATS
from app.imaging.prepare import (
    PreparedImage,
    fit_size,
    prepare_candidate,
    prepare_pair,
    prepare_reference,
    resize,
)

__all__ = [
    "SUPPORTED_FORMATS",
    "Decoded",
    "PreparedImage",
    "decode_image",
    "decode_plane",
    "fit_size",
    "prepare_candidate",
    "prepare_pair",
    "prepare_reference",
    "quiet_pillow",
    "resize",
]
