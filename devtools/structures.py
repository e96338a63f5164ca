"""Image files written structure by structure, for shapes no encoder writes: TIFF directories
(strip tables, chains, loops, tags), JPEG segments and padding, GIF blocks, WebP chunks. Shared by
the screening tests, ``devtools/attacks.py`` and the benchmarks.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

# -- TIFF -------------------------------------------------------------------------------------

BYTE, ASCII, SHORT, LONG, UNDEFINED, LONG8 = 1, 2, 3, 4, 7, 16
_FORMATS = {BYTE: "B", ASCII: "B", SHORT: "H", LONG: "I", UNDEFINED: "B", LONG8: "Q", 6: "b"}


@dataclass(frozen=True)
class Tag:
    """One directory entry: its values (integers, or bytes for BYTE/ASCII/UNDEFINED)."""

    tag: int
    type: int
    values: Sequence[int] | bytes

    @property
    def count(self) -> int:
        return len(self.values)

    def encoded(self, order: str) -> bytes:
        if isinstance(self.values, bytes):
            return self.values
        return struct.pack(f"{order}{len(self.values)}{_FORMATS[self.type]}", *self.values)


def tiff(
    directories: Sequence[Sequence[Tag]],
    *,
    data: bytes = b"",
    order: str = "<",
    big: bool = False,
    links: Sequence[int | None] | None = None,
) -> bytes:
    """A TIFF: the header, ``data`` at ``tiff_data_offset(big)``, then each directory (its
    out-of-line values just before it). Directory i links to i + 1 (the last to none), or to the
    directory whose index ``links[i]`` gives (None: none), which can make a loop."""
    inline = 8 if big else 4  # values that fit in an entry's value field
    placed = _placements(directories, data, order, big)
    out = bytearray(_tiff_header(order, big, placed[0][1] if placed else 0))
    out += data + b"\0" * (len(data) % 2)
    for index, directory in enumerate(directories):
        values_at, directory_at = placed[index]
        blobs, entries = bytearray(), bytearray()
        for entry in sorted(directory, key=lambda t: t.tag):
            raw = entry.encoded(order)
            if len(raw) > inline:
                field = struct.pack(order + ("Q" if big else "I"), values_at + len(blobs))
                blobs += raw
            else:
                field = raw.ljust(inline, b"\0")
            kind = order + ("HHQ" if big else "HHI")
            entries += struct.pack(kind, entry.tag, entry.type, entry.count) + field
        target = index + 1 if links is None else links[index]
        following = placed[target][1] if target is not None and target < len(placed) else 0
        out += blobs
        assert len(out) == directory_at
        out += struct.pack(order + ("Q" if big else "H"), len(directory)) + entries
        out += struct.pack(order + ("Q" if big else "I"), following)
    return bytes(out)


def tiff_directory_offsets(
    directories: Sequence[Sequence[Tag]], *, data: bytes = b"", order: str = "<", big: bool = False
) -> list[int]:
    """Where ``tiff`` places each directory (for tags that point at one: EXIF, GPS)."""
    return [directory for _, directory in _placements(directories, data, order, big)]


def _placements(
    directories: Sequence[Sequence[Tag]], data: bytes, order: str, big: bool
) -> list[tuple[int, int]]:
    """(values offset, directory offset) of each directory."""
    entry_size, count_size, offset_size = (20, 8, 8) if big else (12, 2, 4)
    position = tiff_data_offset(big) + len(data) + len(data) % 2
    placed: list[tuple[int, int]] = []
    for directory in directories:
        sizes = (len(t.encoded(order)) for t in directory)
        values = sum(size for size in sizes if size > offset_size)
        placed.append((position, position + values))
        position += values + count_size + len(directory) * entry_size + offset_size
    return placed


def tiff_data_offset(big: bool = False) -> int:
    return 16 if big else 8


def _tiff_header(order: str, big: bool, first: int) -> bytes:
    mark = b"II" if order == "<" else b"MM"
    if big:
        return mark + struct.pack(order + "HHHQ", 43, 8, 0, first)
    return mark + struct.pack(order + "HI", 42, first)


def grey_pixels(width: int, height: int) -> bytes:
    """The pixels of ``grey_page``: a diagonal ramp, 8-bit."""
    ramp = (np.arange(width)[None] * 7 + np.arange(height)[:, None] * 3) % 256
    return ramp.astype(np.uint8).tobytes()


def grey_page(
    width: int,
    height: int,
    *,
    rows_per_strip: int | None = None,
    strips: int | None = None,
    compression: int = 1,
    big: bool = False,
) -> list[Tag]:
    """The entries of an uncompressed 8-bit grey image whose pixels (``grey_pixels``) are the
    file's data. Each strip table has ``strips`` entries (default: as many as the size needs);
    extra entries point at the last strip again, as the strip-flood attack's do."""
    rows = rows_per_strip or height
    needed = -(-height // rows)
    count = needed if strips is None else strips
    base = tiff_data_offset(big)
    offsets = [base + min(i, needed - 1) * rows * width for i in range(count)]
    sizes = [min(rows, height - min(i, needed - 1) * rows) * width for i in range(count)]
    table = LONG8 if big else LONG
    return [
        Tag(256, LONG, [width]),
        Tag(257, LONG, [height]),
        Tag(258, SHORT, [8]),
        Tag(259, SHORT, [compression]),
        Tag(262, SHORT, [1]),
        Tag(273, table, offsets),
        Tag(277, SHORT, [1]),
        Tag(278, LONG, [rows]),
        Tag(279, table, sizes),
    ]


def grey_tiff(
    width: int,
    height: int,
    *,
    rows_per_strip: int | None = None,
    strips: int | None = None,
    compression: int = 1,
    pages: int = 1,
    links: Sequence[int | None] | None = None,
    extra: Sequence[Tag] = (),
    big: bool = False,
) -> bytes:
    """A TIFF of ``pages`` ``grey_page`` images; ``extra`` tags are added (or replace the entry
    of the same tag)."""
    page = grey_page(
        width,
        height,
        rows_per_strip=rows_per_strip,
        strips=strips,
        compression=compression,
        big=big,
    )
    replaced = {tag.tag for tag in extra}
    page = [tag for tag in page if tag.tag not in replaced] + list(extra)
    return tiff([page] * pages, data=grey_pixels(width, height), links=links, big=big)


def tiled_tiff(width: int, height: int, tile: int, *, tiles: int | None = None) -> bytes:
    """An uncompressed 8-bit grey TIFF in ``tile`` x ``tile`` tiles (``tiles`` entries in each
    tile table; default: as many as the size needs)."""
    across, down = -(-width // tile), -(-height // tile)
    needed = across * down
    block = bytes((i * 5) % 256 for i in range(tile * tile))
    offsets = [tiff_data_offset() + (i % needed) * len(block) for i in range(tiles or needed)]
    page = [
        Tag(256, LONG, [width]),
        Tag(257, LONG, [height]),
        Tag(258, SHORT, [8]),
        Tag(259, SHORT, [1]),
        Tag(262, SHORT, [1]),
        Tag(277, SHORT, [1]),
        Tag(322, LONG, [tile]),
        Tag(323, LONG, [tile]),
        Tag(324, LONG, offsets),
        Tag(325, LONG, [len(block)] * len(offsets)),
    ]
    return tiff([page], data=block * needed)


def strip_flood_tiff(side: int = 1024, entries: int = 2_400_000) -> bytes:
    """The strip-offset flood: a ``side`` x ``side`` grey TIFF with RowsPerStrip 1 and
    ``entries`` strip entries, all pointing at one row (19 MB at the defaults, under the upload
    cap). Before screening, Pillow made a Python tile of each: 14 s of CPU and 850 MB."""
    row = bytes(range(256)) * (side // 256 + 1)
    base = tiff_data_offset()
    page = [
        Tag(256, LONG, [side]),
        Tag(257, LONG, [side]),
        Tag(258, SHORT, [8]),
        Tag(259, SHORT, [1]),
        Tag(262, SHORT, [1]),
        Tag(273, LONG, [base] * entries),
        Tag(277, SHORT, [1]),
        Tag(278, LONG, [1]),
        Tag(279, LONG, [side] * entries),
    ]
    return tiff([page], data=row[:side])


# -- JPEG -------------------------------------------------------------------------------------


def jpeg_segment(marker: int, body: bytes) -> bytes:
    return bytes([0xFF, marker]) + struct.pack(">H", len(body) + 2) + body


def after_soi(jpeg: bytes, inserted: bytes) -> bytes:
    """``jpeg`` with ``inserted`` right after its start-of-image marker."""
    return jpeg[:2] + inserted + jpeg[2:]


def before_first_scan(jpeg: bytes, inserted: bytes) -> bytes:
    """``jpeg`` with ``inserted`` just before its first start-of-scan marker."""
    at = jpeg.index(b"\xff\xda")
    return jpeg[:at] + inserted + jpeg[at:]


def inside_first_scan(jpeg: bytes, inserted: bytes) -> bytes:
    """``jpeg`` with ``inserted`` at the start of its first scan's entropy-coded data."""
    at = jpeg.index(b"\xff\xda")
    (length,) = struct.unpack_from(">H", jpeg, at + 2)
    return jpeg[: at + 2 + length] + inserted + jpeg[at + 2 + length :]


# -- GIF and WebP ------------------------------------------------------------------------------


def gif_extension(label: int, payload: bytes, block: int = 255) -> bytes:
    """An extension block with ``payload`` in sub-blocks of ``block`` bytes."""
    chunks = [payload[i : i + block] for i in range(0, len(payload), block)]
    return b"!" + bytes([label]) + b"".join(bytes([len(c)]) + c for c in chunks) + b"\0"


def gif_with_extensions(gif: bytes, extensions: bytes) -> bytes:
    """``gif`` with ``extensions`` before its first block after the header and colour table."""
    flags = gif[10]
    at = 13 + (3 << ((flags & 7) + 1) if flags & 0x80 else 0)
    return gif[:at] + extensions + gif[at:]


def webp_chunk(fourcc: bytes, body: bytes) -> bytes:
    return fourcc + struct.pack("<I", len(body)) + body + b"\0" * (len(body) % 2)


def webp_chunks(webp: bytes) -> list[bytes]:
    """The chunks of a WebP file (each with its header and padding)."""
    chunks, offset = [], 12
    while offset + 8 <= len(webp):
        (length,) = struct.unpack_from("<I", webp, offset + 4)
        end = offset + 8 + length + (length & 1)
        chunks.append(webp[offset:end])
        offset = end
    return chunks


def webp_of(chunks: Sequence[bytes]) -> bytes:
    body = b"WEBP" + b"".join(chunks)
    return b"RIFF" + struct.pack("<I", len(body)) + body
