"""JPEG: what Pillow walks in Python, and what libjpeg decodes once per scan.

Pillow reads a JPEG's markers in a Python loop up to the first scan, one byte at a time through
fill bytes (``0xFF``) and stray bytes, and runs a Python handler for each segment (19 MB of fill
bytes took 9.5 s; 4.7 million empty comments 4.3 s; 128 quantisation segments of 1,000 tables
each 0.43 s). libjpeg then decodes every scan as a pass over all the blocks it covers, so the
cost of the pixels is about scans x pixels. Measured on the benchmark machine (docs/security.md).
"""

from __future__ import annotations

import re
import struct
from dataclasses import dataclass

from app.errors import UnsupportedImageFormat

# Every scan of a JPEG is a pass over the blocks it covers: decoding costs about scans x pixels
# (a detailed 40 Mpx photograph at 12 scans took 1.35 s of CPU, so 350 M scan-pixels hold about
# a second). Baseline JPEGs have one scan; progressive encoders write 10 (libjpeg) to about 20
# (mozjpeg) per image.
MAX_JPEG_SCANS = 64
MAX_JPEG_SCAN_PIXELS = 350_000_000  # scans x width x height
# Segments before the first scan (APPn, COM, tables, the frame header): a camera writes a dozen
# (EXIF, XMP, an ICC profile split into a few APP2 segments, MPF, tables). Pillow runs a Python
# handler for each.
MAX_JPEG_HEADER_SEGMENTS = 64
# Segments of the image in all (a progressive JPEG has about 3 per scan).
MAX_JPEG_SEGMENTS = 1024
# Fill bytes (0xFF) or stray bytes before a marker: encoders write none; Pillow skips them one
# at a time in Python before the first scan.
MAX_JPEG_PADDING = 64
# A quantisation segment holds at most 4 tables (ids 0 to 3; Pillow parses each in Python).
MAX_JPEG_TABLES_PER_SEGMENT = 4
_TABLE_BYTES = 1 + 64  # one 8-bit table; a 16-bit one is 1 + 128

_SOF_MARKERS = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}  # frame headers (not DHT/DAC)
_SOS, _DQT, _EOI = 0xDA, 0xDB, 0xD9
# Markers without a length field, as Pillow reads them (RSTn, SOI, EOI, TEM, JPG and JPGn).
_STANDALONE = frozenset({0x01, 0xC8, *range(0xD0, 0xDA), *range(0xF0, 0xFE)})
# Where a marker may start: 0xFF followed by anything but 0x00 (stuffing) or, inside a scan's
# entropy-coded data, a restart marker (0xD0-0xD7). A run of 0xFF is fill bytes: the marker is
# its last 0xFF. (A pattern that starts with one literal byte is searched at memchr-like speed:
# 6 ms over 19 MB here; a run of 0xFF is then matched whole, in C.)
_HEADER_CANDIDATE = re.compile(rb"\xff[^\x00]")
_SCAN_CANDIDATE = re.compile(rb"\xff[^\x00\xd0-\xd7]")
_FILL = re.compile(rb"\xff+")


@dataclass
class JpegStructure:
    """What the walk found."""

    scans: int = 0
    pixels: int = 0  # the largest frame's width x height
    segments: int = 0
    header_segments: int = 0  # before the first scan
    frames_before_scan: int = 0


def jpeg_structure(data: bytes, what: str = "image") -> JpegStructure:
    """Walk the first image of a JPEG (the one decoded; an MPO's others never are) marker by
    marker, skipping entropy-coded data with one regular-expression search per scan. Raises
    ``UnsupportedImageFormat`` as soon as a limit is passed (so the walk itself stays short)."""
    found = JpegStructure()
    offset, size, in_header = 2, len(data), True
    while offset < size:
        # Before the first scan, Pillow steps through padding byte by byte: look no further.
        window = offset + MAX_JPEG_PADDING + 2 if in_header else size
        start, skipped = _next_marker(
            data, offset, window, in_header, MAX_JPEG_SEGMENTS - found.segments
        )
        found.segments += skipped
        if found.segments > MAX_JPEG_SEGMENTS:
            raise _refused(what, f"more than {MAX_JPEG_SEGMENTS} markers")
        if start is None:
            if window < size:
                raise _refused(
                    what, f"more than {MAX_JPEG_PADDING} bytes of padding before a marker"
                )
            break
        marker = data[start + 1]
        found.segments += 1
        if found.segments > MAX_JPEG_SEGMENTS:
            raise _refused(what, f"more than {MAX_JPEG_SEGMENTS} markers")
        if in_header:
            found.header_segments += 1
            if found.header_segments > MAX_JPEG_HEADER_SEGMENTS:
                raise _refused(
                    what, f"more than {MAX_JPEG_HEADER_SEGMENTS} segments before its image data"
                )
        if marker == _EOI and not in_header:
            break  # the end of the first image: the only one decoded (an MPO's others are not)
        if marker in _STANDALONE:
            offset = start + 2
            continue
        if start + 4 > size:
            break
        (length,) = struct.unpack_from(">H", data, start + 2)
        if marker in _SOF_MARKERS or marker == _DQT:
            _check_segment(marker, data[start + 4 : start + 2 + length], found, in_header, what)
        offset = start + 2 + length
        if marker == _SOS:
            found.scans += 1
            in_header = False
            _check_scans(found, what)
    return found


def _next_marker(
    data: bytes, offset: int, end: int, in_header: bool, budget: int
) -> tuple[int | None, int]:
    """Where the next marker's 0xFF is, from ``offset`` up to ``end`` (None if there is none),
    and how many restart markers after fill bytes were passed on the way (a Python step each:
    the search stops once there are more than ``budget``)."""
    candidate = _HEADER_CANDIDATE if in_header else _SCAN_CANDIDATE
    end = min(end, len(data))
    skipped = 0
    while skipped <= budget and (match := candidate.search(data, offset, end)) is not None:
        fill = _FILL.match(data, match.start(), end)
        last = (fill.end() if fill else match.start() + 1) - 1  # the run's last 0xFF
        if last + 1 >= end:
            break
        following = data[last + 1]
        if following != 0 and (in_header or not 0xD0 <= following <= 0xD7):
            return last, skipped
        offset = last + 2
        skipped += 1
    return None, skipped


def check_jpeg(data: bytes, what: str) -> None:
    jpeg_structure(data, what)


def _check_scans(found: JpegStructure, what: str) -> None:
    scans, pixels = found.scans, found.pixels
    if scans > MAX_JPEG_SCANS or scans * pixels > MAX_JPEG_SCAN_PIXELS:
        allowed = min(MAX_JPEG_SCANS, MAX_JPEG_SCAN_PIXELS // max(pixels, 1))
        raise UnsupportedImageFormat(
            f"the {what} is a JPEG with {scans} scans of {pixels} pixels (at most {allowed} "
            "scans at that size): save it again as a baseline JPEG"
        )


def _check_segment(
    marker: int, body: bytes, found: JpegStructure, in_header: bool, what: str
) -> None:
    if marker in _SOF_MARKERS and len(body) >= 6:
        height, width = struct.unpack_from(">HH", body, 1)
        found.pixels = max(found.pixels, height * width)
        components = body[5]
        if in_header:
            found.frames_before_scan += 1
            if found.frames_before_scan > 1:
                raise _refused(what, "two frame headers before its first scan")
            if len(body) != 6 + 3 * components:
                raise _refused(
                    what, f"a frame header of {len(body) + 2} bytes for {components} components"
                )
    elif (
        marker == _DQT
        and in_header
        and len(body) > MAX_JPEG_TABLES_PER_SEGMENT * (2 * _TABLE_BYTES - 1)
    ):
        raise _refused(
            what,
            f"a quantisation segment of {len(body) + 2} bytes (at most "
            f"{MAX_JPEG_TABLES_PER_SEGMENT} tables)",
        )


def _refused(what: str, why: str) -> UnsupportedImageFormat:
    return UnsupportedImageFormat(
        f"the {what} is a JPEG with {why}, which no standard encoder writes: "
        "save it again with a standard encoder"
    )
