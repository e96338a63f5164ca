"""Screen uploaded bytes before Pillow sees them: refuse formats we do not take, and files built to
make a decoder slow.

Pillow decodes pixels in C, but some work happens in Python or scales with what a tiny file
declares: PNG chunks are walked one by one in Python (a million empty chunks held a decode
thread for seconds), every scan of a progressive JPEG is a pass over all its coefficients (1,000
repeated scans in 122 kB took 1.2 s), and RLE-compressed BMPs are decoded by a Python loop. The
checks here read only the bytes' structure (no pixel is decoded) and run in milliseconds at the
upload cap.
"""

from __future__ import annotations

import struct

from app.errors import UnsupportedImageFormat

SUPPORTED_FORMATS: tuple[str, ...] = ("PNG", "JPEG", "WEBP", "GIF", "BMP", "TIFF")
SUPPORTED_TEXT = "PNG, JPEG, WebP, GIF, BMP or TIFF"

# A PNG may hold a few dozen metadata chunks plus its IDAT stream in chunks of at least 1 kB
# (encoders write 8 to 64 kB); more chunks than that is a file built to be slow.
PNG_BASE_CHUNKS = 64
PNG_BYTES_PER_CHUNK = 1024
# Every scan of a JPEG is a pass over the blocks it covers: decoding costs about scans x pixels
# (measured on a 2-core AMD EPYC: a detailed 40 Mpx photograph at 12 scans took 1.35 s of CPU,
# so 350 M scan-pixels hold about a second; docs/security.md). Baseline JPEGs have one scan;
# progressive encoders write 10 (libjpeg) to about 20 (mozjpeg) per image; camera MPO files
# hold a few images.
MAX_JPEG_SCANS = 64
MAX_JPEG_SCAN_PIXELS = 350_000_000  # scans x width x height

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_BMP_RLE = {1: "RLE8", 2: "RLE4"}
_SOF_MARKERS = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}  # frame headers (not DHT/DAC)
# Text formats someone may mistake for images; matched after an optional BOM and whitespace.
_REFUSED_PREFIXES: tuple[tuple[bytes, str], ...] = (
    (b"<svg", "SVG"),
    (b"<?xml", "XML/SVG"),
    (b"<!doctype svg", "SVG"),
    (b"%pdf", "PDF"),
    (b"%!ps", "PostScript"),
)


def screen(data: bytes, what: str) -> None:
    """Raise ``UnsupportedImageFormat`` for refused formats and pathological files."""
    head = data[:256].removeprefix(b"\xef\xbb\xbf").lstrip().lower()
    for prefix, name in _REFUSED_PREFIXES:
        if head.startswith(prefix):
            raise UnsupportedImageFormat(
                f"the {what} is {name}, which is not supported; "
                f"convert it to {SUPPORTED_TEXT} (raster) first"
            )
    if data.startswith(_PNG_SIGNATURE):
        _check_png(data, what)
    elif data.startswith(b"\xff\xd8"):
        _check_jpeg(data, what)
    elif data.startswith(b"BM"):
        _check_bmp(data, what)


def png_chunk_count(data: bytes, stop_after: int | None = None) -> int:
    """Chunks in a PNG, walked by their length fields up to IEND or the end of the data (or
    until ``stop_after`` is passed: a walk of a million empty chunks would itself be slow)."""
    offset, count = len(_PNG_SIGNATURE), 0
    while offset + 8 <= len(data) and (stop_after is None or count <= stop_after):
        (length,) = struct.unpack_from(">I", data, offset)
        kind = data[offset + 4 : offset + 8]
        count += 1
        offset += 12 + length
        if kind == b"IEND":
            break
    return count


def jpeg_scans(data: bytes) -> tuple[int, int]:
    """Start-of-scan segments in a JPEG stream (and any images appended to it, as in MPO), and
    the largest frame's pixel count.

    Walks the marker segments by their lengths; after each SOS, skips the entropy-coded data to
    the next marker (``0xFF`` followed by anything but ``0x00`` stuffing or a restart marker).
    """
    offset, scans, pixels, size = 2, 0, 0, len(data)
    while offset + 4 <= size:
        if data[offset] != 0xFF:
            break  # not a marker: let the decoder judge the rest
        marker = data[offset + 1]
        if marker == 0xFF:  # fill byte
            offset += 1
            continue
        if marker in (0xD8, 0xD9, 0x01) or 0xD0 <= marker <= 0xD7:  # no length field
            offset += 2
            continue
        (length,) = struct.unpack_from(">H", data, offset + 2)
        if marker in _SOF_MARKERS and offset + 9 <= size:
            height, width = struct.unpack_from(">HH", data, offset + 5)
            pixels = max(pixels, height * width)
        offset += 2 + length
        if marker == 0xDA:
            scans += 1
            offset = _end_of_entropy_data(data, offset)
    return scans, pixels


def _end_of_entropy_data(data: bytes, offset: int) -> int:
    while True:
        found = data.find(b"\xff", offset)
        if found < 0 or found + 1 >= len(data):
            return len(data)
        following = data[found + 1]
        if following == 0x00 or 0xD0 <= following <= 0xD7:
            offset = found + 2
            continue
        return found


def _check_png(data: bytes, what: str) -> None:
    allowed = PNG_BASE_CHUNKS + len(data) // PNG_BYTES_PER_CHUNK
    if png_chunk_count(data, stop_after=allowed) > allowed:
        raise UnsupportedImageFormat(
            f"the {what} is a PNG of {len(data)} bytes split into more than {allowed} chunks "
            "(the most for its size): save it again with a standard encoder"
        )


def _check_jpeg(data: bytes, what: str) -> None:
    scans, pixels = jpeg_scans(data)
    if scans > MAX_JPEG_SCANS or scans * pixels > MAX_JPEG_SCAN_PIXELS:
        allowed = min(MAX_JPEG_SCANS, MAX_JPEG_SCAN_PIXELS // max(pixels, 1))
        raise UnsupportedImageFormat(
            f"the {what} is a JPEG with {scans} scans of {pixels} pixels (at most {allowed} "
            "scans at that size): save it again as a baseline JPEG"
        )


def _check_bmp(data: bytes, what: str) -> None:
    if len(data) < 34:
        return  # too short to be a BMP; the decoder says so
    (header_size,) = struct.unpack_from("<I", data, 14)
    if header_size < 40:
        return  # OS/2 BMP: uncompressed
    (compression,) = struct.unpack_from("<I", data, 30)
    if compression in _BMP_RLE:
        raise UnsupportedImageFormat(
            f"the {what} is a run-length encoded ({_BMP_RLE[compression]}) BMP, which is not "
            f"supported; save it as an uncompressed BMP or as {SUPPORTED_TEXT}"
        )
