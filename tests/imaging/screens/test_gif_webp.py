"""app.imaging.screens.gif and .webp: extension blocks, data blocks and frames of a GIF; chunks
and frames of a WebP. What encoders write (animations included) passes and decodes."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from app.errors import UnsupportedImageFormat
from app.imaging import decode_image
from app.imaging.formats import screen
from app.imaging.screens import gif as gif_screen
from app.imaging.screens import webp as webp_screen
from app.imaging.screens.gif import MAX_GIF_EXTENSIONS
from app.imaging.screens.webp import MAX_WEBP_CHUNKS
from devtools.images import encode, photo
from devtools.structures import (
    gif_extension,
    gif_with_extensions,
    webp_chunk,
    webp_chunks,
    webp_of,
)

MAX_PIXELS = 40_000_000


def animation(fmt: str, frames: int, **options: object) -> bytes:
    images = [Image.fromarray(np.full((32, 32, 3), (8 * i) % 256, np.uint8)) for i in range(frames)]
    buffer = io.BytesIO()
    images[0].save(buffer, fmt, save_all=True, append_images=images[1:], **options)
    return buffer.getvalue()


def decodes(data: bytes) -> bool:
    return decode_image(data, what="image", max_pixels=MAX_PIXELS).tensor.shape[0] == 3


GIF = encode(Image.fromarray(photo("chelsea")).quantize(64), "GIF", comment=b"x" * 1000)


# -- GIF ----------------------------------------------------------------------------------------


def test_gifs_as_encoders_write_them_pass() -> None:
    for data in (GIF, animation("GIF", 50, duration=40, loop=0)):
        screen(data, "image")
        assert decodes(data)


def test_extension_blocks_before_the_image_are_bounded() -> None:
    """Pillow parses each extension before the first image in Python."""
    comment = gif_extension(0xFE, b"note")
    screen(gif_with_extensions(GIF, comment * (MAX_GIF_EXTENSIONS - 1)), "image")
    with pytest.raises(UnsupportedImageFormat, match="extension blocks before its image"):
        screen(gif_with_extensions(GIF, comment * (MAX_GIF_EXTENSIONS + 1)), "image")


def test_data_split_into_tiny_blocks_is_refused() -> None:
    """Pillow reads an extension's sub-blocks one at a time in Python: 1-byte sub-blocks are
    the cheapest way to make it loop (about 10 million in 19 MB)."""
    data = gif_with_extensions(GIF, gif_extension(0xFE, b"x" * 20_000, block=1))
    with pytest.raises(UnsupportedImageFormat, match="data blocks"):
        screen(data, "image")
    screen(gif_with_extensions(GIF, gif_extension(0xFE, b"x" * 20_000)), "image")


def test_frames_are_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(gif_screen, "MAX_GIF_FRAMES", 10)
    screen(animation("GIF", 10), "image")
    with pytest.raises(UnsupportedImageFormat, match="more than 10 frames"):
        screen(animation("GIF", 11), "image")


# -- WebP ---------------------------------------------------------------------------------------


def test_webps_as_encoders_write_them_pass() -> None:
    for data in (
        encode(photo("chelsea"), "WEBP"),
        encode(photo("chelsea"), "WEBP", lossless=True),
        animation("WEBP", 30, duration=40),
    ):
        screen(data, "image")
        assert decodes(data)


def test_chunks_are_bounded() -> None:
    chunks = webp_chunks(encode(photo("chelsea", 64), "WEBP", exif=b"Exif\0\0"))
    junk = webp_chunk(b"JUNK", b"")
    fits = webp_of([chunks[0], *[junk] * (MAX_WEBP_CHUNKS - len(chunks)), *chunks[1:]])
    screen(fits, "image")
    over = webp_of([chunks[0], *[junk] * (MAX_WEBP_CHUNKS + 1), *chunks[1:]])
    with pytest.raises(UnsupportedImageFormat, match=f"more than {MAX_WEBP_CHUNKS} chunks"):
        screen(over, "image")


def test_animation_frames_are_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(webp_screen, "MAX_WEBP_FRAMES", 10)
    screen(animation("WEBP", 10), "image")
    with pytest.raises(UnsupportedImageFormat, match="more than 10 animation frames"):
        screen(animation("WEBP", 11), "image")
