"""PNG: Pillow walks the chunks one by one in Python (a million empty chunks in 12 MB held a
decode thread for seconds)."""

from __future__ import annotations

import struct

from app.errors import UnsupportedImageFormat

SIGNATURE = b"\x89PNG\r\n\x1a\n"
# A PNG may hold a few dozen metadata chunks plus its IDAT stream in chunks of at least 1 kB
# (encoders write 8 to 64 kB); more chunks than that is a file built to be slow.
PNG_BASE_CHUNKS = 64
PNG_BYTES_PER_CHUNK = 1024


def png_chunk_count(data: bytes, stop_after: int | None = None) -> int:
    """Chunks in a PNG, walked by their length fields up to IEND or the end of the data (or
    until ``stop_after`` is passed: a walk of a million empty chunks would itself be slow)."""
    offset, count = len(SIGNATURE), 0
    while offset + 8 <= len(data) and (stop_after is None or count <= stop_after):
        (length,) = struct.unpack_from(">I", data, offset)
        kind = data[offset + 4 : offset + 8]
        count += 1
        offset += 12 + length
        if kind == b"IEND":
            break
    return count


def png_exif(data: bytes) -> bytes | None:
    """The body of a PNG's eXIf chunk, wherever it is (Pillow sees one after the image data
    only once it has decoded the pixels), or None. Call it on screened bytes: ``check_png``
    bounds the chunks walked."""
    offset = len(SIGNATURE)
    while offset + 8 <= len(data):
        (length,) = struct.unpack_from(">I", data, offset)
        kind = data[offset + 4 : offset + 8]
        if kind == b"eXIf":
            return data[offset + 8 : offset + 8 + length]
        if kind == b"IEND":
            break
        offset += 12 + length
    return None


def check_png(data: bytes, what: str) -> None:
    allowed = PNG_BASE_CHUNKS + len(data) // PNG_BYTES_PER_CHUNK
    if png_chunk_count(data, stop_after=allowed) > allowed:
        raise UnsupportedImageFormat(
            f"the {what} is a PNG of {len(data)} bytes split into more than {allowed} chunks "
            "(the most for its size): save it again with a standard encoder"
        )
