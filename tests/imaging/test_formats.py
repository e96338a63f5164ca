"""app.imaging.formats and decoding within a budget: files built to be slow are refused from
their structure, before Pillow sees them (PNG and BMP here; the other formats' rules in
``tests/imaging/screens``); large uploads are decoded no larger than they are scored.
"""

from __future__ import annotations

import io
import struct
import zlib

import pytest
import torch
from PIL import Image, ImageFile

from app.budgets import RequestPixels
from app.errors import ImageTooLarge, UnsupportedImageFormat
from app.imaging import decode_image, prepare_candidate, prepare_reference
from app.imaging.formats import screen
from app.imaging.screens.png import png_chunk_count
from devtools.images import encode, photo

MAX_PIXELS = 40_000_000


def chunk(kind: bytes, body: bytes) -> bytes:
    crc = zlib.crc32(kind + body) & 0xFFFFFFFF
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", crc)


def png_with_empty_chunks(count: int) -> bytes:
    """A valid 16x16 grey PNG with ``count`` empty IDAT chunks before its real one."""
    header = struct.pack(">IIBBBBB", 16, 16, 8, 2, 0, 0, 0)
    rows = zlib.compress((b"\0" + b"\x80" * 48) * 16)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", b"") * count
        + chunk(b"IDAT", rows)
        + chunk(b"IEND", b"")
    )


def rle_bmp(width: int, height: int, compression: int) -> bytes:
    """A BMP whose header declares RLE8 (1) or RLE4 (2) data: just "end of bitmap"."""
    palette = b"\0\0\0\0" * 256
    pixels = b"\x00\x01"
    offset = 14 + 40 + len(palette)
    header = b"BM" + struct.pack("<IHHI", offset + len(pixels), 0, 0, offset)
    info = struct.pack(
        "<IiiHHIIiiII", 40, width, height, 1, 8, compression, len(pixels), 2835, 2835, 256, 0
    )
    return header + info + palette + pixels


@pytest.fixture
def pillow_must_not_open(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fail the test if Pillow is asked to open anything: refusals come from the bytes."""

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("Pillow was asked to open a file the screen should refuse")

    monkeypatch.setattr(Image, "open", refuse)


# -- PNG chunks -----------------------------------------------------------------------------


def test_png_chunk_count() -> None:
    assert png_chunk_count(png_with_empty_chunks(10)) == 13  # IHDR, 10 + 1 IDAT, IEND
    assert png_chunk_count(png_with_empty_chunks(10_000), stop_after=100) == 101


@pytest.mark.usefixtures("pillow_must_not_open")
def test_a_png_flooded_with_chunks_is_refused_from_its_bytes() -> None:
    with pytest.raises(UnsupportedImageFormat, match="chunks"):
        screen(png_with_empty_chunks(1_000_000), "candidate image")


def test_pngs_as_encoders_write_them_are_accepted() -> None:
    image = photo("coffee")  # 600x400: Pillow writes its IDAT stream in 64 kB chunks
    data = encode(image, "PNG", compress_level=0)
    assert png_chunk_count(data) > 3
    screen(data, "image")
    screen(png_with_empty_chunks(50), "image")  # a few empty chunks are harmless


# -- BMP --------------------------------------------------------------------------------------


@pytest.mark.usefixtures("pillow_must_not_open")
@pytest.mark.parametrize(("compression", "name"), [(1, "RLE8"), (2, "RLE4")])
def test_run_length_encoded_bmps_are_refused(compression: int, name: str) -> None:
    with pytest.raises(UnsupportedImageFormat, match=name):
        screen(rle_bmp(6000, 6000, compression), "image")


def test_uncompressed_bmps_are_accepted() -> None:
    tensor = decode_image(
        encode(photo("chelsea"), "BMP"), what="image", max_pixels=MAX_PIXELS
    ).tensor
    assert tensor.shape == (3, 300, 451)


# -- decoding to the scored size --------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "GIF", "WEBP"])
def test_large_uploads_are_decoded_near_the_scored_size(fmt: str) -> None:
    """A 2000x1500 upload scored at 256 px is never a full-size float tensor: JPEG by DCT
    scaling, other formats by an integer box reduction in 8 bits."""
    image = Image.fromarray(photo("astronaut")).resize((2000, 1500))
    data = encode(image if fmt != "GIF" else image.convert("P"), fmt)
    decoded = decode_image(
        data, what="image", max_pixels=MAX_PIXELS, sizing=lambda size: (256, 192)
    )
    height, width = decoded.tensor.shape[1:]
    assert decoded.size == (2000, 1500)
    assert 256 <= width < 2 * 256
    assert 192 <= height < 2 * 192
    prepared = prepare_reference(data, max_pixels=MAX_PIXELS, max_side=256)
    assert prepared.tensor.shape == (3, 192, 256)
    assert prepared.resized


def test_images_already_at_the_scored_size_are_decoded_exactly() -> None:
    data = encode(photo("chelsea"), "PNG")
    whole = decode_image(data, what="image", max_pixels=MAX_PIXELS).tensor
    sized = prepare_reference(data, max_pixels=MAX_PIXELS, max_side=1024).tensor
    assert torch.equal(whole, sized)


def test_reduction_is_close_to_a_direct_resize() -> None:
    """Box reduction then antialiased bilinear stays within a few grey levels of resizing the
    full image directly."""
    from app.imaging import resize

    big = Image.fromarray(photo("astronaut")).resize((2048, 2048), Image.Resampling.LANCZOS)
    data = encode(big, "PNG")
    prepared = prepare_reference(data, max_pixels=MAX_PIXELS, max_side=512).tensor
    full = decode_image(data, what="image", max_pixels=MAX_PIXELS).tensor
    direct = resize(full, (512, 512))
    assert (prepared - direct).abs().mean() < 2 / 255


def test_exif_rotated_large_jpeg_is_reduced_and_turned_upright() -> None:
    exif = Image.Exif()
    exif[0x0112] = 6  # stored sideways, shown rotated 90 degrees clockwise
    stored = Image.fromarray(photo("chelsea")).resize((1800, 1200))
    data = encode(stored, "JPEG", exif=exif)
    prepared = prepare_reference(data, max_pixels=MAX_PIXELS, max_side=300)
    assert prepared.original_size == (1200, 1800)
    assert prepared.tensor.shape == (3, 300, 200)


# -- the pixel budget of a request -------------------------------------------------------------


def test_a_request_budget_is_shared_by_its_images() -> None:
    data = encode(photo("chelsea"), "PNG")  # 451 x 300 = 135,300 pixels
    budget = RequestPixels(300_000)
    reference = prepare_reference(data, max_pixels=MAX_PIXELS, max_side=1024, budget=budget)
    prepare_candidate(data, reference, max_pixels=MAX_PIXELS, size_policy="resize", budget=budget)
    with pytest.raises(ImageTooLarge, match="SIMSCORE_MAX_REQUEST_PIXELS=300000"):
        prepare_candidate(
            data, reference, max_pixels=MAX_PIXELS, size_policy="resize", budget=budget
        )
    assert budget.used == 2 * 451 * 300


def test_a_refused_size_costs_no_decode(monkeypatch: pytest.MonkeyPatch) -> None:
    """Under the strict policy a candidate of another size is refused from its header."""
    from app.errors import SizeMismatch

    reference = prepare_reference(
        encode(photo("chelsea"), "PNG"), max_pixels=MAX_PIXELS, max_side=1024
    )
    loads: list[str] = []
    real_load = ImageFile.ImageFile.load

    def counting_load(self: ImageFile.ImageFile) -> object:
        loads.append(self.format or "")
        return real_load(self)

    monkeypatch.setattr(ImageFile.ImageFile, "load", counting_load)
    with pytest.raises(SizeMismatch):
        prepare_candidate(
            encode(photo("coffee"), "PNG"), reference, max_pixels=MAX_PIXELS, size_policy="strict"
        )
    assert loads == []


def test_gif_of_a_large_canvas_decodes_to_the_scored_size() -> None:
    """A tiny GIF declaring a large canvas (the 62-byte attack) is decoded at most at its
    header's size and scored at SIMSCORE_MAX_SIDE, never as a full-size float image."""
    canvas = Image.new("P", (4000, 3000), 7)
    buffer = io.BytesIO()
    canvas.save(buffer, "GIF")
    decoded = decode_image(
        buffer.getvalue(), what="image", max_pixels=MAX_PIXELS, sizing=lambda size: (1024, 768)
    )
    assert decoded.size == (4000, 3000)
    assert decoded.tensor.shape == (3, 1000, 1334)  # box-reduced by 3 (rounded up), in 8 bits
