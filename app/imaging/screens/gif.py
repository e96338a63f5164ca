"""GIF: Pillow reads the blocks before the first image in Python, one data sub-block at a time
(comments, application data), and its frames one by one when asked for them.

A GIF is a sequence of blocks: extensions (``!``) and images (``,``), each followed by a chain of
length-prefixed sub-blocks of at most 255 bytes, then a trailer (``;``). The walk here follows
those chains with a bound on their number, so that it stays short too.
"""

from __future__ import annotations

from app.errors import UnsupportedImageFormat

MAX_GIF_FRAMES = 4096  # images in the file; only the first is decoded
MAX_GIF_EXTENSIONS = 64  # extension blocks before the first image (Pillow parses each)
# Data sub-blocks: encoders write 255 bytes each; a file split into far smaller ones is built to
# be slow. At most this many, plus one per GIF_BYTES_PER_BLOCK bytes of file.
GIF_BASE_BLOCKS = 1024
GIF_BYTES_PER_BLOCK = 128

_EXTENSION, _IMAGE, _TRAILER = 0x21, 0x2C, 0x3B


def is_gif(data: bytes) -> bool:
    return data[:6] in (b"GIF87a", b"GIF89a")


def check_gif(data: bytes, what: str) -> None:
    """Walk every block to the trailer (or to where the structure breaks: the decoder then
    judges); refuse past a limit."""
    size = len(data)
    if size < 13:
        return
    flags = data[10]
    offset = 13 + (3 << ((flags & 7) + 1) if flags & 0x80 else 0)
    allowed_blocks = GIF_BASE_BLOCKS + size // GIF_BYTES_PER_BLOCK
    frames = extensions = blocks = 0
    while offset < size:
        kind = data[offset]
        if kind == _EXTENSION:
            extensions += 1
            if frames == 0 and extensions > MAX_GIF_EXTENSIONS:
                raise _refused(
                    what, f"more than {MAX_GIF_EXTENSIONS} extension blocks before its image"
                )
            offset += 2
        elif kind == _IMAGE:
            frames += 1
            if frames > MAX_GIF_FRAMES:
                raise _refused(what, f"more than {MAX_GIF_FRAMES} frames")
            if offset + 10 > size:
                return
            local = data[offset + 9]
            offset += 10 + (3 << ((local & 7) + 1) if local & 0x80 else 0) + 1  # + LZW size
        else:
            return  # the trailer, or not a block: the decoder judges the rest
        offset, blocks = _skip_sub_blocks(data, offset, blocks, allowed_blocks)
        if blocks > allowed_blocks:
            raise _refused(
                what,
                f"its {size} bytes split into more than {allowed_blocks} data blocks "
                "(the most for its size)",
            )


def _skip_sub_blocks(data: bytes, offset: int, blocks: int, allowed: int) -> tuple[int, int]:
    """Past a chain of sub-blocks (to after its empty terminator), counting them; stops early
    once ``allowed`` is passed."""
    size = len(data)
    while offset < size and blocks <= allowed:
        length = data[offset]
        offset += 1 + length
        if length == 0:
            break
        blocks += 1
    return offset, blocks


def _refused(what: str, why: str) -> UnsupportedImageFormat:
    return UnsupportedImageFormat(
        f"the {what} is a GIF with {why}, which no standard encoder writes: "
        "save it again with a standard encoder"
    )
