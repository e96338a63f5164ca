"""app.imaging.decode: formats, colour handling, pixel limits, EXIF, decoding to the scored size."""

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
from PIL import Image

from app.errors import ImageTooLarge, NotAnImage, UnsupportedImageFormat
from app.imaging import decode_image as decode_upload
from app.imaging import quiet_pillow
from devtools.images import encode, photo

MAX_PIXELS = 40_000_000


ASTRONAUT = photo("astronaut")  # (512, 512, 3)
CHELSEA = photo("chelsea")  # (300, 451, 3)
COFFEE = photo("coffee")  # (400, 600, 3)
CAMERA = skimage.data.camera()  # (512, 512) grayscale


def chw(array: np.ndarray) -> torch.Tensor:
    """(H, W, 3) uint8 -> (3, H, W) float in [0, 1], the expected decode."""
    return torch.from_numpy(np.array(array)).permute(2, 0, 1).float() / 255.0


def decode_image(
    data: bytes, *, max_pixels: int = MAX_PIXELS
) -> tuple[torch.Tensor, tuple[int, int]]:
    """The whole image (no sizing): the tensor and its (width, height)."""
    decoded = decode_upload(data, what="image", max_pixels=max_pixels)
    return decoded.tensor, decoded.size


def decode_tensor(data: bytes) -> torch.Tensor:
    return decode_image(data)[0]


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
    tensor = decode_tensor(encode(COFFEE, fmt, **params))
    assert tensor.shape == (3, 400, 600)
    assert (tensor - chw(COFFEE)).abs().mean() < 0.02
    assert tensor.min() >= 0.0
    assert tensor.max() <= 1.0


def test_size_is_width_then_height() -> None:
    tensor, size = decode_image(encode(CHELSEA, "PNG"), max_pixels=MAX_PIXELS)
    assert size == (451, 300)
    assert tensor.shape == (3, 300, 451)


def test_grayscale_replicated_to_three_channels() -> None:
    tensor = decode_tensor(encode(CAMERA, "PNG"))
    expected = torch.from_numpy(CAMERA).float() / 255.0
    assert tensor.shape == (3, 512, 512)
    for channel in tensor:
        torch.testing.assert_close(channel, expected, atol=1e-6, rtol=0)


def test_one_bit_image_maps_to_zero_and_one() -> None:
    image = Image.fromarray(CAMERA > 128)
    assert image.mode == "1"
    tensor = decode_tensor(encode(image, "PNG"))
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
    tensor = decode_tensor(data)
    expected = torch.from_numpy(values.astype(np.float32) / 65535.0)
    for channel in tensor:
        torch.testing.assert_close(channel, expected, atol=1e-7, rtol=0)
    assert tensor[0, 0, 1].item() == pytest.approx(1000 / 65535)
    assert tensor.max().item() == 1.0


def test_sixteen_bit_transparent_colour_composited_over_white() -> None:
    values = np.full((16, 16), 20_000, dtype=np.uint16)
    values[2, 3] = 1000
    tensor = decode_tensor(encode(values, "PNG", transparency=1000))
    assert torch.all(tensor[:, 2, 3] == 1.0)
    torch.testing.assert_close(tensor[:, 0, 0], torch.full((3,), 20_000 / 65535))


def test_sixteen_bit_rgb_png_keeps_the_high_byte() -> None:
    # Pillow opens 48-bit PNGs as 8-bit RGB: values land within 1/255 of value / 65535.
    pixel = np.array([0, 1000, 65535], dtype=">u2")
    row = b"\x00" + np.tile(pixel, 16).tobytes()
    tensor = decode_tensor(raw_png(16, 16, 16, 2, zlib.compress(row * 16)))
    expected = torch.tensor([0.0, 1000 / 65535, 1.0]).view(3, 1, 1).expand(3, 16, 16)
    torch.testing.assert_close(tensor, expected, atol=1 / 255, rtol=0)


def test_float_image_is_clipped_to_unit_range() -> None:
    values = np.linspace(-0.5, 1.5, 16 * 16, dtype=np.float32).reshape(16, 16)
    tensor = decode_tensor(encode(Image.fromarray(values, mode="F"), "TIFF"))
    torch.testing.assert_close(tensor[0], torch.from_numpy(values).clamp(0, 1))


def test_alpha_composited_over_white() -> None:
    rgba = np.zeros((16, 16, 4), dtype=np.uint8)
    rgba[..., :3] = (200, 40, 0)
    rgba[0, 0, 3] = 0  # fully transparent -> white
    rgba[0, 1, 3] = 255  # opaque -> its colour
    rgba[0, 2, 3] = 51  # 20 % opaque -> 0.2 * colour + 0.8 * white
    tensor = decode_tensor(encode(rgba, "PNG"))
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
    tensor = decode_tensor(encode(Image.fromarray(la, mode="LA"), "PNG"))
    assert torch.all(tensor[:, 3, 4] == 1.0)
    torch.testing.assert_close(tensor[:, 0, 0], torch.full((3,), 10 / 255))


def test_palette_image_converted_to_its_colours() -> None:
    palette = Image.fromarray(ASTRONAUT).quantize(64)
    tensor = decode_tensor(encode(palette, "PNG"))
    expected = chw(np.asarray(palette.convert("RGB")))
    torch.testing.assert_close(tensor, expected, atol=1e-6, rtol=0)
    assert (tensor - chw(ASTRONAUT)).abs().mean() < 0.05


def test_palette_transparency_composited_over_white() -> None:
    image = Image.new("P", (16, 16), 1)
    image.putpalette([255, 255, 255, 0, 0, 0] + [0, 0, 0] * 254)  # index 1 is black
    image.putpixel((5, 6), 0)
    image.putpalette([0, 0, 255, 0, 0, 0] + [0, 0, 0] * 254)  # index 0 is blue ...
    tensor = decode_tensor(encode(image, "PNG", transparency=0))  # ... but transparent
    torch.testing.assert_close(tensor[:, 6, 5], torch.ones(3))
    torch.testing.assert_close(tensor[:, 0, 0], torch.zeros(3))


def test_cmyk_converted_to_rgb() -> None:
    cmyk = Image.fromarray(COFFEE).convert("CMYK")
    lossless = decode_tensor(encode(cmyk, "TIFF"))
    torch.testing.assert_close(lossless, chw(np.asarray(cmyk.convert("RGB"))), atol=1e-6, rtol=0)
    jpeg = decode_tensor(encode(cmyk, "JPEG", quality=95))
    assert (jpeg - chw(COFFEE)).abs().mean() < 0.03


def test_gif_first_frame_of_animation() -> None:
    frames = [Image.new("RGB", (32, 32), colour) for colour in ((255, 0, 0), (0, 0, 255))]
    data = encode(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=100)
    assert getattr(Image.open(io.BytesIO(data)), "n_frames", 1) == 2
    tensor = decode_tensor(data)
    expected = torch.tensor([1.0, 0.0, 0.0]).view(3, 1, 1).expand(3, 32, 32)
    torch.testing.assert_close(tensor, expected)


def test_camera_mpo_jpeg_decodes_first_picture() -> None:
    frames = [Image.new("RGB", (32, 32), colour) for colour in ((255, 0, 0), (0, 0, 255))]
    data = encode(frames[0], "MPO", save_all=True, append_images=frames[1:])
    tensor = decode_tensor(data)
    expected = torch.tensor([1.0, 0.0, 0.0]).view(3, 1, 1).expand(3, 32, 32)
    torch.testing.assert_close(tensor, expected, atol=0.02, rtol=0)


def test_gif_of_a_photograph_is_close() -> None:
    tensor = decode_tensor(encode(CHELSEA, "GIF"))
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
        decode_tensor(b"")


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
        decode_tensor(data)


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "WEBP", "TIFF", "BMP", "GIF"])
def test_truncated_file_not_an_image(fmt: str) -> None:
    data = encode(ASTRONAUT, fmt)
    with pytest.raises(NotAnImage, match=r"truncated or corrupt|not a PNG"):
        decode_tensor(data[: len(data) // 2])


def test_unsupported_pillow_format_not_an_image() -> None:
    with pytest.raises(NotAnImage):
        decode_tensor(encode(ASTRONAUT, "PPM"))


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
        decode_tensor(data)
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
    quiet_pillow()  # as the pipeline does when it starts
    with warnings.catch_warnings(record=True) as seen, pytest.raises(ImageTooLarge) as caught:
        decode_image(data, max_pixels=MAX_PIXELS)
    assert not [w for w in seen if issubclass(w.category, Image.DecompressionBombWarning)]
    assert time.perf_counter() - start < 1.0
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss_before_kb < 200_000
    message = str(caught.value)
    assert "SIMSCORE_MAX_PIXELS=40000000" in message
    assert str(width * height) in message
    pillow_limit = 2 * (Image.MAX_IMAGE_PIXELS or 0)
    if width * height < pillow_limit:  # past it, Pillow refuses before we see the size
        assert f"{width}x{height}" in message


def test_concurrent_decodes_leave_warning_filters_unchanged() -> None:
    quiet_pillow()
    filters_before = list(warnings.filters)
    bombs = [bomb_png(10_000, 10_000)] * 4
    photos = [encode(CHELSEA, "PNG")] * 4

    def attempt(data: bytes) -> str:
        try:
            decode_tensor(data)
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
