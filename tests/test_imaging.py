"""Tests for app.imaging: decoding, colour handling, pixel limits and the size policy."""

from __future__ import annotations

import io
import resource
import struct
import time
import warnings
import zlib
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import pytest
import skimage.data
import torch
import torch.nn.functional as F
from PIL import Image

from app.errors import (
    ImageTooLarge,
    ImageTooSmall,
    InvalidRequest,
    NotAnImage,
    SizeMismatch,
    UnsupportedImageFormat,
)
from app.imaging import (
    MIN_SIDE,
    PreparedImage,
    decode_image,
    prepare_candidate,
    prepare_pair,
    prepare_reference,
    resize,
)

MAX_PIXELS = 40_000_000


def photo(name: str) -> np.ndarray:
    """A photograph shipped with scikit-image (no network)."""
    array: np.ndarray = getattr(skimage.data, name)()
    return array


ASTRONAUT = photo("astronaut")  # (512, 512, 3)
CHELSEA = photo("chelsea")  # (300, 451, 3)
COFFEE = photo("coffee")  # (400, 600, 3)
CAMERA = photo("camera")  # (512, 512) grayscale


def encode(image: Image.Image | np.ndarray, fmt: str, **params: Any) -> bytes:
    if isinstance(image, np.ndarray):
        image = Image.fromarray(image)
    buffer = io.BytesIO()
    image.save(buffer, fmt, **params)
    return buffer.getvalue()


def chw(array: np.ndarray) -> torch.Tensor:
    """(H, W, 3) uint8 -> (3, H, W) float in [0, 1], the expected decode."""
    return torch.from_numpy(np.array(array)).permute(2, 0, 1).float() / 255.0


def decode(data: bytes) -> torch.Tensor:
    return decode_image(data, max_pixels=MAX_PIXELS)[0]


def raw_png(width: int, height: int, bit_depth: int, colour_type: int, rows: bytes) -> bytes:
    """A PNG written by hand (for pixel formats Pillow will not save): filter 0 on every row."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        crc = zlib.crc32(kind + body) & 0xFFFFFFFF
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", crc)

    header = struct.pack(">IIBBBBB", width, height, bit_depth, colour_type, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", rows) + chunk(b"IEND", b"")
    )


def bomb_png(width: int, height: int) -> bytes:
    """A black 1-bit PNG: a few hundred KB on disk, width * height pixels once decoded."""
    compressor = zlib.compressobj(9)
    row = bytes(1 + (width + 7) // 8)
    body = b"".join(compressor.compress(row) for _ in range(height)) + compressor.flush()
    return raw_png(width, height, 1, 0, body)


# --- decoding and colour -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fmt", "params"),
    [("PNG", {}), ("BMP", {}), ("TIFF", {}), ("WEBP", {"lossless": True})],
)
def test_lossless_formats_round_trip_exactly(fmt: str, params: dict[str, Any]) -> None:
    tensor, size = decode_image(encode(ASTRONAUT, fmt, **params), max_pixels=MAX_PIXELS)
    assert size == (512, 512)
    assert tensor.dtype == torch.float32
    assert tensor.shape == (3, 512, 512)
    assert tensor.is_contiguous()
    assert tensor.device.type == "cpu"
    torch.testing.assert_close(tensor, chw(ASTRONAUT), atol=1e-6, rtol=0)


@pytest.mark.parametrize(("fmt", "params"), [("JPEG", {"quality": 95}), ("WEBP", {"quality": 95})])
def test_lossy_formats_round_trip_closely(fmt: str, params: dict[str, Any]) -> None:
    tensor = decode(encode(COFFEE, fmt, **params))
    assert tensor.shape == (3, 400, 600)
    assert (tensor - chw(COFFEE)).abs().mean() < 0.02
    assert tensor.min() >= 0.0
    assert tensor.max() <= 1.0


def test_size_is_width_then_height() -> None:
    tensor, size = decode_image(encode(CHELSEA, "PNG"), max_pixels=MAX_PIXELS)
    assert size == (451, 300)
    assert tensor.shape == (3, 300, 451)


def test_grayscale_replicated_to_three_channels() -> None:
    tensor = decode(encode(CAMERA, "PNG"))
    expected = torch.from_numpy(CAMERA).float() / 255.0
    assert tensor.shape == (3, 512, 512)
    assert tensor.is_contiguous()
    for channel in tensor:
        torch.testing.assert_close(channel, expected, atol=1e-6, rtol=0)


def test_one_bit_image_maps_to_zero_and_one() -> None:
    image = Image.fromarray(CAMERA > 128)
    assert image.mode == "1"
    tensor = decode(encode(image, "PNG"))
    expected = torch.from_numpy(CAMERA > 128).float().expand(3, -1, -1)
    torch.testing.assert_close(tensor, expected)


@pytest.mark.parametrize("byte_order", ["<u2", ">u2"])
def test_sixteen_bit_grayscale_uses_full_range(byte_order: str) -> None:
    values = np.array([[0, 1000, 32768, 65535]] * 16, dtype=np.uint16)
    values = np.tile(values, (1, 4))
    if byte_order == "<u2":
        data = encode(values, "PNG")
        assert Image.open(io.BytesIO(data)).mode == "I;16"
    else:
        data = encode(values.astype(">u2"), "TIFF")
        assert Image.open(io.BytesIO(data)).mode == "I;16B"
    tensor = decode(data)
    expected = torch.from_numpy(values.astype(np.float32) / 65535.0)
    for channel in tensor:
        torch.testing.assert_close(channel, expected, atol=1e-7, rtol=0)
    assert tensor[0, 0, 1].item() == pytest.approx(1000 / 65535)
    assert tensor.max().item() == 1.0


def test_sixteen_bit_transparent_colour_composited_over_white() -> None:
    values = np.full((16, 16), 20_000, dtype=np.uint16)
    values[2, 3] = 1000
    tensor = decode(encode(values, "PNG", transparency=1000))
    assert torch.all(tensor[:, 2, 3] == 1.0)
    torch.testing.assert_close(tensor[:, 0, 0], torch.full((3,), 20_000 / 65535))


def test_sixteen_bit_rgb_png_keeps_the_high_byte() -> None:
    # Pillow opens 48-bit PNGs as 8-bit RGB: values land within 1/255 of value / 65535.
    pixel = np.array([0, 1000, 65535], dtype=">u2")
    row = b"\x00" + np.tile(pixel, 16).tobytes()
    tensor = decode(raw_png(16, 16, 16, 2, zlib.compress(row * 16)))
    expected = torch.tensor([0.0, 1000 / 65535, 1.0]).view(3, 1, 1).expand(3, 16, 16)
    torch.testing.assert_close(tensor, expected, atol=1 / 255, rtol=0)


def test_float_image_is_clipped_to_unit_range() -> None:
    values = np.linspace(-0.5, 1.5, 16 * 16, dtype=np.float32).reshape(16, 16)
    tensor = decode(encode(Image.fromarray(values, mode="F"), "TIFF"))
    torch.testing.assert_close(tensor[0], torch.from_numpy(values).clamp(0, 1))


def test_alpha_composited_over_white() -> None:
    rgba = np.zeros((16, 16, 4), dtype=np.uint8)
    rgba[..., :3] = (200, 40, 0)
    rgba[0, 0, 3] = 0  # fully transparent -> white
    rgba[0, 1, 3] = 255  # opaque -> its colour
    rgba[0, 2, 3] = 51  # 20 % opaque -> 0.2 * colour + 0.8 * white
    tensor = decode(encode(rgba, "PNG"))
    colour = torch.tensor([200, 40, 0]) / 255.0
    torch.testing.assert_close(tensor[:, 0, 0], torch.ones(3))
    torch.testing.assert_close(tensor[:, 0, 1], colour)
    torch.testing.assert_close(tensor[:, 0, 2], 0.2 * colour + 0.8)
    assert tensor.shape == (3, 16, 16)
    assert tensor.is_contiguous()


def test_gray_alpha_composited_over_white() -> None:
    la = np.zeros((16, 16, 2), dtype=np.uint8)
    la[..., 0] = 10
    la[..., 1] = 255
    la[3, 4, 1] = 0
    tensor = decode(encode(Image.fromarray(la, mode="LA"), "PNG"))
    assert torch.all(tensor[:, 3, 4] == 1.0)
    torch.testing.assert_close(tensor[:, 0, 0], torch.full((3,), 10 / 255))


def test_palette_image_converted_to_its_colours() -> None:
    palette = Image.fromarray(ASTRONAUT).quantize(64)
    tensor = decode(encode(palette, "PNG"))
    expected = chw(np.asarray(palette.convert("RGB")))
    torch.testing.assert_close(tensor, expected, atol=1e-6, rtol=0)
    assert (tensor - chw(ASTRONAUT)).abs().mean() < 0.05


def test_palette_transparency_composited_over_white() -> None:
    image = Image.new("P", (16, 16), 1)
    image.putpalette([255, 255, 255, 0, 0, 0] + [0, 0, 0] * 254)  # index 1 is black
    image.putpixel((5, 6), 0)
    image.putpalette([0, 0, 255, 0, 0, 0] + [0, 0, 0] * 254)  # index 0 is blue ...
    tensor = decode(encode(image, "PNG", transparency=0))  # ... but transparent
    torch.testing.assert_close(tensor[:, 6, 5], torch.ones(3))
    torch.testing.assert_close(tensor[:, 0, 0], torch.zeros(3))


def test_cmyk_converted_to_rgb() -> None:
    cmyk = Image.fromarray(COFFEE).convert("CMYK")
    lossless = decode(encode(cmyk, "TIFF"))
    torch.testing.assert_close(lossless, chw(np.asarray(cmyk.convert("RGB"))), atol=1e-6, rtol=0)
    jpeg = decode(encode(cmyk, "JPEG", quality=95))
    assert (jpeg - chw(COFFEE)).abs().mean() < 0.03


def test_gif_first_frame_of_animation() -> None:
    frames = [Image.new("RGB", (32, 32), colour) for colour in ((255, 0, 0), (0, 0, 255))]
    data = encode(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=100)
    assert getattr(Image.open(io.BytesIO(data)), "n_frames", 1) == 2
    tensor = decode(data)
    expected = torch.tensor([1.0, 0.0, 0.0]).view(3, 1, 1).expand(3, 32, 32)
    torch.testing.assert_close(tensor, expected)


def test_camera_mpo_jpeg_decodes_first_picture() -> None:
    frames = [Image.new("RGB", (32, 32), colour) for colour in ((255, 0, 0), (0, 0, 255))]
    data = encode(frames[0], "MPO", save_all=True, append_images=frames[1:])
    tensor = decode(data)
    expected = torch.tensor([1.0, 0.0, 0.0]).view(3, 1, 1).expand(3, 32, 32)
    torch.testing.assert_close(tensor, expected, atol=0.02, rtol=0)


def test_gif_of_a_photograph_is_close() -> None:
    tensor = decode(encode(CHELSEA, "GIF"))
    assert tensor.shape == (3, 300, 451)
    assert (tensor - chw(CHELSEA)).abs().mean() < 0.05


def test_exif_orientation_applied() -> None:
    exif = Image.Exif()
    exif[0x0112] = 6  # stored landscape; display rotated 90 degrees clockwise
    data = encode(CHELSEA, "JPEG", quality=95, exif=exif)
    tensor, size = decode_image(data, max_pixels=MAX_PIXELS)
    assert size == (300, 451)
    assert tensor.shape == (3, 451, 300)
    clockwise = chw(np.ascontiguousarray(np.rot90(CHELSEA, k=-1)))
    anticlockwise = chw(np.ascontiguousarray(np.rot90(CHELSEA, k=1)))
    assert (tensor - clockwise).abs().mean() < 0.02
    assert (tensor - anticlockwise).abs().mean() > 0.1


# --- refusals ------------------------------------------------------------------------------


def test_empty_bytes_not_an_image() -> None:
    with pytest.raises(NotAnImage, match="empty"):
        decode(b"")


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(b"hello, this is a text file\n" * 20, id="text"),
        pytest.param(np.random.default_rng(0).bytes(4096), id="random"),
        pytest.param(b"\x89PNG\r\n\x1a\n", id="png-signature-only"),
    ],
)
def test_unidentifiable_bytes_not_an_image(data: bytes) -> None:
    with pytest.raises(NotAnImage, match="PNG, JPEG, WebP, GIF, BMP or TIFF"):
        decode(data)


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "WEBP", "TIFF", "BMP", "GIF"])
def test_truncated_file_not_an_image(fmt: str) -> None:
    data = encode(ASTRONAUT, fmt)
    with pytest.raises(NotAnImage, match=r"truncated or corrupt|not a PNG"):
        decode(data[: len(data) // 2])


def test_unsupported_pillow_format_not_an_image() -> None:
    with pytest.raises(NotAnImage):
        decode(encode(ASTRONAUT, "PPM"))


@pytest.mark.parametrize(
    ("data", "name"),
    [
        (b'<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"/>', "SVG"),
        (b'\xef\xbb\xbf \n<?xml version="1.0"?><svg/>', "XML/SVG"),
        (b"  <!DOCTYPE svg><svg/>", "SVG"),
        (b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n1 0 obj", "PDF"),
    ],
)
def test_vector_and_document_formats_unsupported(data: bytes, name: str) -> None:
    with pytest.raises(UnsupportedImageFormat) as caught:
        decode(data)
    assert name in str(caught.value)
    assert "PNG, JPEG, WebP, GIF, BMP or TIFF" in str(caught.value)


@pytest.mark.parametrize(
    ("width", "height"),
    [
        pytest.param(8000, 6000, id="over-limit"),
        pytest.param(10_000, 10_000, id="pillow-warning-range"),
        pytest.param(20_000, 20_000, id="pillow-error-range"),
    ],
)
def test_too_many_pixels_refused_before_decoding(width: int, height: int) -> None:
    data = bomb_png(width, height)
    assert len(data) < 1_000_000
    rss_before_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # Pillow's DecompressionBombWarning must not escape
        with pytest.raises(ImageTooLarge) as caught:
            decode_image(data, max_pixels=MAX_PIXELS)
    assert time.perf_counter() - start < 1.0
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss_before_kb < 200_000
    message = str(caught.value)
    assert "SIMSCORE_MAX_PIXELS=40000000" in message
    assert str(width * height) in message
    pillow_limit = 2 * (Image.MAX_IMAGE_PIXELS or 0)
    if width * height < pillow_limit:  # past it, Pillow refuses before we see the size
        assert f"{width}x{height}" in message


def test_concurrent_decodes_leave_warning_filters_unchanged() -> None:
    filters_before = list(warnings.filters)
    bombs = [bomb_png(10_000, 10_000)] * 4
    photos = [encode(CHELSEA, "PNG")] * 4

    def attempt(data: bytes) -> str:
        try:
            decode(data)
        except ImageTooLarge:
            return "refused"
        return "decoded"

    with ThreadPoolExecutor(4) as pool:
        outcomes = list(pool.map(attempt, bombs + photos))
    assert outcomes == ["refused"] * 4 + ["decoded"] * 4
    assert warnings.filters == filters_before


def test_pixel_limit_is_inclusive() -> None:
    tensor, _ = decode_image(encode(CHELSEA, "PNG"), max_pixels=451 * 300)
    assert tensor.shape == (3, 300, 451)
    with pytest.raises(ImageTooLarge, match="451x300"):
        decode_image(encode(CHELSEA, "PNG"), max_pixels=451 * 300 - 1)


@pytest.mark.parametrize(("width", "height"), [(MIN_SIDE - 1, 100), (100, 3), (1, 1)])
def test_tiny_image_refused(width: int, height: int) -> None:
    data = encode(np.zeros((height, width, 3), dtype=np.uint8), "PNG")
    with pytest.raises(ImageTooSmall) as caught:
        prepare_reference(data, max_pixels=MAX_PIXELS, max_side=1024)
    assert f"{width}x{height}" in str(caught.value)
    assert "pools four times" in str(caught.value)
    assert "at least 16 px" in str(caught.value)


def test_tiny_candidate_refused() -> None:
    reference = prepare_reference(encode(CHELSEA, "PNG"), max_pixels=MAX_PIXELS, max_side=1024)
    with pytest.raises(ImageTooSmall, match="candidate"):
        prepare_candidate(
            encode(CHELSEA[:10], "PNG"),
            reference,
            max_pixels=MAX_PIXELS,
            max_side=1024,
            size_policy="resize",
        )


def test_image_too_thin_after_downscale_refused() -> None:
    data = encode(np.zeros((20, 5000), dtype=np.uint8), "PNG")
    with pytest.raises(ImageTooSmall, match="1024x4 px after downscaling 5000x20"):
        prepare_reference(data, max_pixels=MAX_PIXELS, max_side=1024)


def test_smallest_accepted_image() -> None:
    data = encode(np.zeros((MIN_SIDE, MIN_SIDE, 3), dtype=np.uint8), "PNG")
    prepared = prepare_reference(data, max_pixels=MAX_PIXELS, max_side=1024)
    assert (prepared.width, prepared.height) == (MIN_SIDE, MIN_SIDE)


# --- size policy ---------------------------------------------------------------------------


def test_max_side_downscale_keeps_aspect() -> None:
    prepared = prepare_reference(encode(CHELSEA, "PNG"), max_pixels=MAX_PIXELS, max_side=200)
    assert prepared.original_size == (451, 300)
    assert (prepared.width, prepared.height) == (200, round(300 * 200 / 451))
    assert prepared.resized
    assert prepared.tensor.is_contiguous()
    portrait = np.ascontiguousarray(CHELSEA.transpose(1, 0, 2))
    prepared = prepare_reference(encode(portrait, "PNG"), max_pixels=MAX_PIXELS, max_side=200)
    assert (prepared.width, prepared.height) == (round(300 * 200 / 451), 200)


def test_image_within_max_side_is_not_resized() -> None:
    prepared = prepare_reference(encode(CHELSEA, "PNG"), max_pixels=MAX_PIXELS, max_side=451)
    assert not prepared.resized
    assert (prepared.width, prepared.height) == (451, 300)


def test_same_size_candidate_matches_reference() -> None:
    reference, candidate = prepare_pair(
        encode(CHELSEA, "PNG"),
        encode(CHELSEA[::-1].copy(), "PNG"),
        max_pixels=MAX_PIXELS,
        max_side=1024,
        size_policy="strict",
    )
    assert candidate.tensor.shape == reference.tensor.shape == (3, 300, 451)
    assert not candidate.resized


def test_same_size_candidate_downscaled_like_reference() -> None:
    reference, candidate = prepare_pair(
        encode(CHELSEA, "PNG"),
        encode(CHELSEA, "JPEG"),
        max_pixels=MAX_PIXELS,
        max_side=128,
        size_policy="strict",
    )
    assert candidate.tensor.shape == reference.tensor.shape == (3, 85, 128)
    assert reference.resized
    assert candidate.resized


def test_resize_policy_resizes_candidate_to_reference() -> None:
    reference, candidate = prepare_pair(
        encode(ASTRONAUT, "PNG"),
        encode(CHELSEA, "PNG"),
        max_pixels=MAX_PIXELS,
        max_side=256,
        size_policy="resize",
    )
    assert reference.tensor.shape == (3, 256, 256)
    assert candidate.tensor.shape == (3, 256, 256)
    assert candidate.original_size == (451, 300)
    assert candidate.resized
    expected = resize(chw(CHELSEA), (256, 256))
    torch.testing.assert_close(candidate.tensor, expected, atol=1e-6, rtol=0)


def test_strict_policy_refuses_different_sizes() -> None:
    with pytest.raises(SizeMismatch) as caught:
        prepare_pair(
            encode(ASTRONAUT, "PNG"),
            encode(CHELSEA, "PNG"),
            max_pixels=MAX_PIXELS,
            max_side=1024,
            size_policy="strict",
        )
    assert "451x300" in str(caught.value)
    assert "512x512" in str(caught.value)


def test_strict_policy_compares_sizes_after_exif_orientation() -> None:
    exif = Image.Exif()
    exif[0x0112] = 6
    rotated = encode(CHELSEA, "JPEG", exif=exif)  # displays as 300x451
    upright = encode(np.ascontiguousarray(np.rot90(CHELSEA, k=-1)), "PNG")
    reference, candidate = prepare_pair(
        upright, rotated, max_pixels=MAX_PIXELS, max_side=1024, size_policy="strict"
    )
    assert candidate.original_size == reference.original_size == (300, 451)
    with pytest.raises(SizeMismatch):
        prepare_pair(
            encode(CHELSEA, "PNG"),
            rotated,
            max_pixels=MAX_PIXELS,
            max_side=1024,
            size_policy="strict",
        )


def test_unknown_size_policy_refused() -> None:
    reference = prepare_reference(encode(CHELSEA, "PNG"), max_pixels=MAX_PIXELS, max_side=1024)
    with pytest.raises(InvalidRequest, match="size_policy"):
        prepare_candidate(
            encode(CHELSEA, "PNG"),
            reference,
            max_pixels=MAX_PIXELS,
            max_side=1024,
            size_policy="stretch",  # type: ignore[arg-type]
        )


def test_prepared_image_is_frozen() -> None:
    prepared = PreparedImage(torch.zeros(3, 20, 30), (30, 20), resized=False)
    assert (prepared.width, prepared.height) == (30, 20)
    with pytest.raises(AttributeError):
        prepared.resized = True  # type: ignore[misc]


# --- resize --------------------------------------------------------------------------------


def test_resize_is_antialiased_bilinear_and_clamped() -> None:
    tensor = chw(ASTRONAUT)
    out = resize(tensor, (100, 150))
    expected = F.interpolate(
        tensor[None], size=(100, 150), mode="bilinear", antialias=True, align_corners=False
    )[0].clamp(0, 1)
    assert out.shape == (3, 100, 150)
    assert out.is_contiguous()
    torch.testing.assert_close(out, expected)
    upscaled = resize(torch.tensor([[[0.0, 1.0], [1.0, 0.0]]]).expand(3, 2, 2), (7, 9))
    assert upscaled.min() >= 0.0
    assert upscaled.max() <= 1.0


def test_resize_to_same_size_is_identity() -> None:
    tensor = chw(CHELSEA)
    assert resize(tensor, (300, 451)) is tensor
