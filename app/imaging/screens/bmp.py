"""BMP: run-length encoded (RLE4, RLE8) pixels are decoded by a Python loop in Pillow (12 kB of
end-of-line codes held the GIL for 1.4 s; 160 bytes decoded to a 6000x6000 image)."""

from __future__ import annotations

import struct

from app.errors import UnsupportedImageFormat

_BMP_RLE = {1: "RLE8", 2: "RLE4"}


def check_bmp(data: bytes, what: str, supported: str) -> None:
    if len(data) < 34:
        return  # too short to be a BMP; the decoder says so
    (header_size,) = struct.unpack_from("<I", data, 14)
    if header_size < 40:
        return  # OS/2 BMP: uncompressed
    (compression,) = struct.unpack_from("<I", data, 30)
    if compression in _BMP_RLE:
        raise UnsupportedImageFormat(
            f"the {what} is a run-length encoded ({_BMP_RLE[compression]}) BMP, which is not "
            f"supported; save it as an uncompressed BMP or as {supported}"
        )
