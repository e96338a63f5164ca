"""The slowest files screening admits, per format, at the upload cap and the pixel limits (every
default limit of ``app/imaging/screens``): what ``bench/decode_bound.py`` times. Not a test.

Each builder returns the file; those that depend on how well an image compresses pick the most
detailed variant that still fits ``SIMSCORE_MAX_UPLOAD_BYTES``.
"""

from __future__ import annotations

import io
import struct
import zlib
from collections.abc import Callable, Sequence

from PIL import Image

from app.config import Settings
from app.imaging.screens.gif import GIF_BASE_BLOCKS, GIF_BYTES_PER_BLOCK, MAX_GIF_EXTENSIONS
from app.imaging.screens.jpeg import (
    MAX_JPEG_HEADER_SEGMENTS,
    MAX_JPEG_SCAN_PIXELS,
    MAX_JPEG_SCANS,
    jpeg_structure,
)
from app.imaging.screens.png import PNG_BASE_CHUNKS, PNG_BYTES_PER_CHUNK
from app.imaging.screens.tiff import MAX_TIFF_STRIPS
from app.imaging.screens.webp import MAX_WEBP_FRAMES
from devtools import attacks, structures
from devtools.images import encode

DEFAULTS = Settings(_env_file=None)
CAP = DEFAULTS.max_upload_bytes
WIDTH, HEIGHT = 8000, 5000  # 40,000,000 px: SIMSCORE_MAX_PIXELS
assert DEFAULTS.max_pixels == WIDTH * HEIGHT


def largest_under_cap(build: Callable[[float], bytes], noises: Sequence[float]) -> bytes:
    """The first of ``build(noise)`` (most detailed first) that fits the upload cap."""
    for noise in noises:
        data = build(noise)
        if len(data) <= CAP:
            return data
    raise ValueError("no variant fits the upload cap")


def photo_at_cap() -> Image.Image:
    return attacks.large_photo(WIDTH, HEIGHT)


# -- JPEG -------------------------------------------------------------------------------------


def jpeg_files() -> dict[str, bytes]:
    # libjpeg's progressive script has about 10 scans: 40 Mpx would be over the scan budget, so
    # the largest progressive JPEG it admits is as large as its scans allow.
    scans = jpeg_structure(attacks.progressive_jpeg(64)).scans
    scale = (MAX_JPEG_SCAN_PIXELS / scans / (WIDTH * HEIGHT)) ** 0.5
    width, height = int(WIDTH * scale) // 8 * 8, int(HEIGHT * scale) // 8 * 8
    side = int((MAX_JPEG_SCAN_PIXELS / MAX_JPEG_SCANS) ** 0.5)

    def baseline(noise: float, room: int = 0) -> bytes:
        data = encode(attacks.detailed_photo(WIDTH, HEIGHT, noise), "JPEG", quality=95)
        return data if len(data) <= CAP - room else b"\0" * (CAP + 1)

    def at_scan_budget(w: int, h: int, scans: int) -> Callable[[float], bytes]:
        def build(noise: float) -> bytes:
            image = attacks.detailed_photo(w, h, noise)
            data = encode(image, "JPEG", quality=90, progressive=True)
            return attacks.with_repeated_last_scan(data, scans - jpeg_structure(data).scans)

        return build

    # The costliest segments Pillow parses: Photoshop resources (a Python loop per 12 bytes),
    # as many as the header allows, then the most detailed baseline image that still fits.
    resource = b"8BIM" + struct.pack(">HBBI", 0x0404, 0, 0, 0)
    photoshop = structures.jpeg_segment(
        0xED, b"Photoshop 3.0\x00" + resource * ((65533 - 14) // 12)
    )
    base_segments = 10  # APP0, two DQT, SOF, four DHT, SOS and a margin
    header = photoshop * (MAX_JPEG_HEADER_SEGMENTS - base_segments)
    return {
        "JPEG 8000x5000, baseline": largest_under_cap(baseline, (8, 5, 2)),
        f"JPEG {width}x{height}, progressive, {scans} scans": largest_under_cap(
            at_scan_budget(width, height, scans), (8, 5, 2, 0)
        ),
        f"JPEG {side}x{side}, progressive, {MAX_JPEG_SCANS} scans": largest_under_cap(
            at_scan_budget(side, side, MAX_JPEG_SCANS), (8, 5, 2, 0)
        ),
        f"JPEG 8000x5000 after {MAX_JPEG_HEADER_SEGMENTS - base_segments} Photoshop segments of "
        "64 kB": structures.after_soi(
            largest_under_cap(lambda n: baseline(n, len(header)), (5, 2, 0)), header
        ),
    }


# -- PNG --------------------------------------------------------------------------------------


def rechunked_png(png: bytes) -> bytes:
    """``png`` with its image data split into as many IDAT chunks as screening allows."""
    chunks, offset = [], 8
    while offset < len(png):
        (length,) = struct.unpack_from(">I", png, offset)
        chunks.append((png[offset + 4 : offset + 8], png[offset + 8 : offset + 8 + length]))
        offset += 12 + length
    data = b"".join(body for kind, body in chunks if kind == b"IDAT")
    others = [(kind, body) for kind, body in chunks if kind not in (b"IDAT", b"IEND")]
    total = len(png) + 12 * (len(data) // PNG_BYTES_PER_CHUNK)
    pieces = PNG_BASE_CHUNKS + total // PNG_BYTES_PER_CHUNK - len(others) - 1
    size = -(-len(data) // pieces)
    idat = [(b"IDAT", data[i : i + size]) for i in range(0, len(data), size)]
    body = b"".join(_png_chunk(kind, part) for kind, part in [*others, *idat, (b"IEND", b"")])
    return png[:8] + body


def _png_chunk(kind: bytes, body: bytes) -> bytes:
    crc = zlib.crc32(kind + body) & 0xFFFFFFFF
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", crc)


def png_files() -> dict[str, bytes]:
    png = encode(photo_at_cap(), "PNG")
    return {
        "PNG 8000x5000": png,
        "PNG 8000x5000, IDAT in the most chunks allowed": rechunked_png(png),
        "PNG 8000x5000, 16-bit grey, blank": attacks.png16_canvas(WIDTH, HEIGHT),
    }


# -- GIF and WebP -----------------------------------------------------------------------------


def gif_files() -> dict[str, bytes]:
    gif = encode(photo_at_cap().quantize(256), "GIF")
    room = CAP - len(gif)
    blocks = GIF_BASE_BLOCKS + CAP // GIF_BYTES_PER_BLOCK - len(gif) // 250
    per_extension = min(room // MAX_GIF_EXTENSIONS, 255 * blocks // MAX_GIF_EXTENSIONS) - 300
    comment = structures.gif_extension(0xFE, b"c" * per_extension)
    extensions = comment * (MAX_GIF_EXTENSIONS - 1)
    return {
        "GIF 8000x5000": gif,
        f"GIF 8000x5000 after {MAX_GIF_EXTENSIONS - 1} comments filling the cap": (
            structures.gif_with_extensions(gif, extensions)
        ),
    }


def webp_files() -> dict[str, bytes]:
    wide = attacks.large_photo(16383, 2441)
    frames = [Image.new("RGB", (16, 16), (i % 256, 0, 0)) for i in range(MAX_WEBP_FRAMES)]
    buffer = io.BytesIO()
    frames[0].save(buffer, "WEBP", save_all=True, append_images=frames[1:], lossless=True)
    chunks = structures.webp_chunks(buffer.getvalue())
    canvas = structures.webp_chunk(
        b"VP8X",
        bytes([0x02, 0, 0, 0]) + (16382).to_bytes(3, "little") + (2440).to_bytes(3, "little"),
    )
    animated = structures.webp_of([canvas, *chunks[1:]])
    return {
        "WebP 16383x2441, lossy": encode(wide, "WEBP", quality=80),
        "WebP 16383x2441, lossless": encode(wide, "WEBP", lossless=True),
        f"WebP 16383x2441 canvas, {MAX_WEBP_FRAMES} frames": animated,
    }


# -- TIFF and BMP ------------------------------------------------------------------------------


def tiff_files() -> dict[str, bytes]:
    photo = photo_at_cap()
    width = (CAP - 8 * MAX_TIFF_STRIPS - 4096) // MAX_TIFF_STRIPS
    tile_side = int(MAX_TIFF_STRIPS**0.5) * 16
    files = {
        f"TIFF {width}x{MAX_TIFF_STRIPS} grey, uncompressed, {MAX_TIFF_STRIPS} strips": (
            structures.grey_tiff(width, MAX_TIFF_STRIPS, rows_per_strip=1)
        ),
        f"TIFF {tile_side}x{tile_side} grey, uncompressed, 16x16 tiles": structures.tiled_tiff(
            tile_side, tile_side, 16
        ),
        "TIFF 8000x5000, 32-bit float, blank": attacks.float_tiff_canvas(WIDTH, HEIGHT),
        "TIFF 8000x5000, 1-bit, CCITT Group 4": encode(
            photo.convert("1"), "TIFF", compression="group4"
        ),
    }
    for scheme in ("tiff_lzw", "tiff_adobe_deflate", "jpeg", "packbits"):

        def build(noise: float, scheme: str = scheme) -> bytes:
            image = attacks.detailed_photo(WIDTH, HEIGHT, noise) if noise else photo
            options = {"quality": 95} if scheme == "jpeg" else {}
            return encode(image, "TIFF", compression=scheme, **options)

        try:
            files[f"TIFF 8000x5000, {scheme}"] = largest_under_cap(build, (8, 2, 0))
        except ValueError:
            files[f"TIFF 8000x5000 grey, {scheme}"] = encode(
                photo.convert("L"), "TIFF", compression=scheme
            )
    return files


def bmp_files() -> dict[str, bytes]:
    side = int((CAP / 3) ** 0.5) - 2
    palette_side = int(CAP**0.5) - 32
    photo = photo_at_cap()
    return {
        f"BMP {side}x{side}, 24-bit": encode(photo.resize((side, side)), "BMP"),
        f"BMP {palette_side}x{palette_side}, 8-bit palette": encode(
            photo.resize((palette_side, palette_side)).quantize(256), "BMP"
        ),
        "BMP 8000x5000, 1-bit": encode(photo.convert("1"), "BMP"),
    }


def admitted_files() -> dict[str, bytes]:
    """Every format's slowest admitted files, in table order."""
    files: dict[str, bytes] = {}
    for build in (jpeg_files, png_files, gif_files, webp_files, tiff_files, bmp_files):
        files |= build()
    too_large = [name for name, data in files.items() if len(data) > CAP]
    if too_large:
        raise ValueError(f"over the upload cap: {too_large}")
    return files
