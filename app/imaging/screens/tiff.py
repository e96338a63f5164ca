"""TIFF: directories and tags as Pillow and libtiff read them.

Pillow builds one Python tile per strip or tile of an uncompressed TIFF and decodes them one by
one: a 1024x1024 grey TIFF with RowsPerStrip 1 and 2.4 million strip entries, all pointing at
one row (19 MB), took 14 s of CPU and 850 MB. It also turns numeric tag values into Python
tuples, reads the directories of the first image's EXIF and GPS data, and walks a chain of
directories when asked for frames (libtiff too). So, for the first image (the one decoded):
strips and tiles no more than its size needs, and at most ``MAX_TIFF_STRIPS``; numeric tags of at
most ``MAX_TIFF_VALUES`` values; compression schemes from a short list libtiff decodes in C;
and for every directory: at most ``MAX_TIFF_TAGS`` entries, a chain of at most ``MAX_TIFF_IFDS``
that never loops.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from app.errors import UnsupportedImageFormat

MAX_TIFF_IFDS = 256  # images (directories) in the chain; only the first is decoded
MAX_TIFF_TAGS = 1024  # entries in one directory (real files have a few dozen)
MAX_TIFF_VALUES = 65_536  # values of one numeric tag (strip and tile tables: see below)
MAX_TIFF_STRIPS = 65_536  # strips or tiles of the first image, every plane together
# Compression schemes taken: libtiff decodes each in C.
TIFF_COMPRESSIONS: dict[int, str] = {
    1: "none",
    2: "CCITT RLE",
    3: "CCITT Group 3",
    4: "CCITT Group 4",
    5: "LZW",
    7: "JPEG",
    8: "Deflate",
    32773: "PackBits",
    32946: "Deflate",
}
_REFUSED_COMPRESSIONS = {
    6: "old-style JPEG",
    32809: "ThunderScan",
    34676: "SGILog",
    34677: "SGILog24",
    34925: "LZMA",
    50000: "Zstandard",
    50001: "WebP",
}

_TYPE_BYTES = {1: 1, 2: 1, 3: 2, 4: 4, 5: 8, 6: 1, 7: 1, 8: 2, 9: 4, 10: 8, 11: 4, 12: 8, 13: 4}
_TYPE_BYTES |= {16: 8, 17: 8, 18: 8}  # BigTIFF's 64-bit integers and IFD offsets
_BYTE_TYPES = frozenset({1, 2, 7})  # BYTE, ASCII, UNDEFINED: Pillow keeps them as bytes
_INTEGERS = {1: "B", 3: "H", 4: "I", 13: "I", 16: "Q", 18: "Q"}
_WIDTH, _LENGTH, _COMPRESSION, _SAMPLES, _ROWS_PER_STRIP, _PLANAR = 256, 257, 259, 277, 278, 284
_TILE_WIDTH, _TILE_LENGTH = 322, 323
_STRIP_TABLES, _TILE_TABLES = (273, 279), (324, 325)  # offsets, byte counts
_SUB_DIRECTORIES = {34665: "EXIF", 34853: "GPS", 40965: "EXIF interoperability"}


@dataclass(frozen=True)
class _Layout:
    endian: str  # "<" or ">"
    big: bool  # BigTIFF

    @property
    def count_format(self) -> str:
        return self.endian + ("Q" if self.big else "H")

    @property
    def entry_format(self) -> str:
        return self.endian + ("HHQ8s" if self.big else "HHI4s")

    @property
    def offset_format(self) -> str:
        return self.endian + ("Q" if self.big else "I")


@dataclass(frozen=True)
class _Entry:
    tag: int
    type: int
    count: int
    value: bytes  # the value field: the value itself if it fits, else its offset


Directory = dict[int, _Entry]


def is_tiff(data: bytes) -> bool:
    return data[:4] in (b"II*\0", b"MM\0*", b"II+\0", b"MM\0+")


def check_tiff(data: bytes, what: str) -> None:
    """Refuse a TIFF whose structure would make Pillow or libtiff slow (module docstring);
    anything merely malformed is left for the decoder to refuse."""
    layout = _layout(data)
    if layout is None:
        return
    offset = _read(data, layout.offset_format, 8 if layout.big else 4)
    seen: set[int] = set()
    while offset:
        if offset in seen:
            raise _refused(what, "a chain of image directories that loops back on itself")
        if len(seen) >= MAX_TIFF_IFDS:
            raise _refused(what, f"more than {MAX_TIFF_IFDS} images (directories)")
        seen.add(offset)
        read = _directory(data, layout, offset, what, entries=len(seen) == 1)
        if read is None:
            return  # truncated: the decoder says so
        directory, offset = read
        if len(seen) == 1:
            _check_first_image(data, layout, directory, what)


def _layout(data: bytes) -> _Layout | None:
    if len(data) < 16 or not is_tiff(data):
        return None
    return _Layout("<" if data[:2] == b"II" else ">", data[2:4] in (b"+\0", b"\0+"))


def _directory(
    data: bytes, layout: _Layout, offset: int, what: str, *, entries: bool
) -> tuple[Directory, int] | None:
    """The directory at ``offset`` (its entries if asked) and the next one's offset, or None
    where the data ends first."""
    count_bytes = 8 if layout.big else 2
    entry_bytes = 20 if layout.big else 12
    if offset + count_bytes > len(data):
        return None
    count = _read(data, layout.count_format, offset)
    if count > MAX_TIFF_TAGS:
        raise _refused(what, f"an image directory of {count} entries (at most {MAX_TIFF_TAGS})")
    start = offset + count_bytes
    end = start + count * entry_bytes
    if end + (8 if layout.big else 4) > len(data):
        return None
    directory: Directory = {}
    if entries:
        for tag, kind, number, value in struct.iter_unpack(layout.entry_format, data[start:end]):
            directory.setdefault(tag, _Entry(tag, kind, number, value))  # Pillow keeps the first
    return directory, _read(data, layout.offset_format, end)


def _check_first_image(data: bytes, layout: _Layout, directory: Directory, what: str) -> None:
    _check_values(directory, what, tables=(*_STRIP_TABLES, *_TILE_TABLES))
    compression = _integer(data, layout, directory, _COMPRESSION, 1)
    if compression not in TIFF_COMPRESSIONS:
        name = _REFUSED_COMPRESSIONS.get(compression, "an unknown scheme")
        raise UnsupportedImageFormat(
            f"the {what} is a TIFF compressed with {name} ({compression}), which is not "
            f"taken; save it uncompressed or with "
            f"{', '.join(sorted(set(TIFF_COMPRESSIONS.values()) - {'none'}))}"
        )
    _check_strips(data, layout, directory, what)
    for tag, name in _SUB_DIRECTORIES.items():
        if tag in directory:
            _check_sub_directory(data, layout, directory, tag, name, what)


def _check_sub_directory(
    data: bytes, layout: _Layout, parent: Directory, tag: int, name: str, what: str
) -> None:
    """The EXIF and GPS directories (Pillow reads them with the first image) and EXIF's own
    interoperability directory."""
    offset = _integer(data, layout, parent, tag, 0)
    read = _directory(data, layout, offset, what, entries=True) if offset else None
    if read is None:
        return
    directory, _ = read
    _check_values(directory, what, tables=())
    if tag == 34665 and 40965 in directory and directory[40965].value != parent[tag].value:
        _check_sub_directory(data, layout, directory, 40965, _SUB_DIRECTORIES[40965], what)


def _check_values(directory: Directory, what: str, tables: tuple[int, ...]) -> None:
    for entry in directory.values():
        numeric = entry.type in _TYPE_BYTES and entry.type not in _BYTE_TYPES
        if numeric and entry.count > MAX_TIFF_VALUES and entry.tag not in tables:
            raise _refused(
                what, f"tag {entry.tag} holding {entry.count} values (at most {MAX_TIFF_VALUES})"
            )


def _check_strips(data: bytes, layout: _Layout, directory: Directory, what: str) -> None:
    """Strip or tile tables no longer than the first image's size needs."""
    width = _integer(data, layout, directory, _WIDTH, 0)
    length = _integer(data, layout, directory, _LENGTH, 0)
    if not width or not length:
        return  # the decoder refuses a TIFF without a size
    planes = 1
    if _integer(data, layout, directory, _PLANAR, 1) == 2:
        planes = max(1, _integer(data, layout, directory, _SAMPLES, 1))
    if _TILE_TABLES[0] in directory:
        tile_width = _integer(data, layout, directory, _TILE_WIDTH, 0)
        tile_length = _integer(data, layout, directory, _TILE_LENGTH, 0)
        if not tile_width or not tile_length:
            raise _refused(what, f"tiles of {tile_width}x{tile_length} px")
        needed = -(-width // tile_width) * -(-length // tile_length) * planes
        tables, unit = _TILE_TABLES, "tiles"
    else:
        rows = _integer(data, layout, directory, _ROWS_PER_STRIP, 2**32 - 1)
        if not rows:
            raise _refused(what, "strips of 0 rows")
        needed = -(-length // rows) * planes
        tables, unit = _STRIP_TABLES, "strips"
    if needed > MAX_TIFF_STRIPS:
        raise _refused(
            what,
            f"a first image of {width}x{length} px in {needed} {unit} (at most {MAX_TIFF_STRIPS})",
        )
    for tag in tables:
        entry = directory.get(tag)
        if entry is not None and entry.count > needed:
            raise _refused(
                what,
                f"{entry.count} entries in tag {tag} where its {width}x{length} px "
                f"need {needed} {unit}",
            )


def _integer(data: bytes, layout: _Layout, directory: Directory, tag: int, default: int) -> int:
    """The first value of an integer tag (``default`` if absent or not an integer)."""
    entry = directory.get(tag)
    if entry is None or entry.type not in _INTEGERS or entry.count < 1:
        return default
    code = layout.endian + _INTEGERS[entry.type]
    size = struct.calcsize(code)
    if entry.count * size <= len(entry.value):
        return _read(entry.value, code, 0)
    offset = _read(entry.value, layout.offset_format, 0)
    return _read(data, code, offset) if offset + size <= len(data) else default


def _read(buffer: bytes, code: str, offset: int) -> int:
    value: int = struct.unpack_from(code, buffer, offset)[0]
    return value


def _refused(what: str, why: str) -> UnsupportedImageFormat:
    return UnsupportedImageFormat(
        f"the {what} is a TIFF with {why}, which no standard encoder writes: "
        "save it again with a standard encoder"
    )
