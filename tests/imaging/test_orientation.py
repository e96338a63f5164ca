"""EXIF/TIFF orientation: every format and TIFF layout decodes to the same upright pixels, once.

Pillow turns a TIFF upright itself as it loads it (through its own decoder and through libtiff,
including libtiff's RGBA interface for subsampled YCbCr) and drops the Orientation tag; the other
formats are turned by ``app.imaging.decode``. Each case stores the same photograph as the
orientation tag says it is stored, and the decode must give the photograph back, at its shown
size, with every size the caller's ``sizing`` sees already the shown one.
"""

from __future__ import annotations

import io
import struct
import zlib
from collections.abc import Callable
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest
import torch
from PIL import Image, TiffImagePlugin

from app.imaging import decode_image, decode_plane, prepare_candidate, prepare_reference
from devtools.images import encode, photo
from devtools.structures import LONG, SHORT, Tag, tiff, tiff_data_offset

MAX_PIXELS = 1_000_000
Pixels = npt.NDArray[np.uint8]
UPRIGHT: Pixels = np.array(photo("chelsea", 64, keep_aspect=True)[:42])  # (42, 64, 3): even sides
SHOWN = (64, 42)  # (width, height)
BIG: Pixels = np.array(photo("chelsea", 128, keep_aspect=True)[:84])  # (84, 128, 3)

# The pixels as stored for each orientation value, so that they are shown as ``upright``
# (TIFF 6.0, tag 274: 2 mirrored, 3 turned 180, 4 flipped, 5 transposed, 6 shown turned 90
# degrees clockwise, 7 transversed, 8 shown turned 90 degrees anticlockwise).
STORED: dict[int, Callable[[Pixels], Pixels]] = {
    1: lambda a: a,
    2: lambda a: a[:, ::-1],
    3: lambda a: a[::-1, ::-1],
    4: lambda a: a[::-1],
    5: lambda a: a.transpose(1, 0, 2),
    6: lambda a: np.rot90(a, 1),
    7: lambda a: a[::-1, ::-1].transpose(1, 0, 2),
    8: lambda a: np.rot90(a, -1),
}
ORIENTATIONS = list(STORED)


def stored(upright: Pixels, orientation: int) -> Pixels:
    return np.ascontiguousarray(STORED[orientation](upright))


def pillow_tiff(upright: Pixels, orientation: int, *, mode: str = "RGB", **options: Any) -> bytes:
    info = TiffImagePlugin.ImageFileDirectory_v2()
    info[274] = orientation
    image = Image.fromarray(stored(upright, orientation)).convert(mode)
    return encode(image, "TIFF", tiffinfo=info, **options)


def with_exif(upright: Pixels, orientation: int, fmt: str, **options: Any) -> bytes:
    exif = Image.Exif()
    exif[274] = orientation
    return encode(stored(upright, orientation), fmt, exif=exif, **options)


def png_exif_after_pixels(upright: Pixels, orientation: int) -> bytes:
    """A PNG whose eXIf chunk follows its image data (allowed; Pillow sees it only on load)."""
    data = with_exif(upright, orientation, "PNG")
    chunks, at = [], 8
    while at < len(data):
        (length,) = struct.unpack(">I", data[at : at + 4])
        chunks.append(data[at : at + 12 + length])
        at += 12 + length
    exif = [c for c in chunks if c[4:8] == b"eXIf"]
    rest = [c for c in chunks if c[4:8] != b"eXIf"]
    assert len(exif) == 1 and rest[-1][4:8] == b"IEND"
    return data[:8] + b"".join(rest[:-1] + exif + rest[-1:])


def _page(
    pixels: Pixels, orientation: int, compression: int, photometric: int, *layout: Tag
) -> list[Tag]:
    """An 8-bit, three-sample TIFF directory: ``layout`` adds the strip or tile tags."""
    height, width = pixels.shape[:2]
    return [
        Tag(256, LONG, [width]),
        Tag(257, LONG, [height]),
        Tag(258, SHORT, [8, 8, 8]),
        Tag(259, SHORT, [compression]),
        Tag(262, SHORT, [photometric]),
        Tag(274, SHORT, [orientation]),
        Tag(277, SHORT, [3]),
        Tag(284, SHORT, [1]),
        *layout,
    ]


def tiled_tiff(upright: Pixels, orientation: int, *, deflate: bool, tile: int = 16) -> bytes:
    """An RGB TIFF in ``tile`` x ``tile`` tiles (Pillow will not write tiles)."""
    pixels = stored(upright, orientation)
    height, width = pixels.shape[:2]
    padded = np.zeros((-(-height // tile) * tile, -(-width // tile) * tile, 3), np.uint8)
    padded[:height, :width] = pixels
    blocks = [
        padded[y : y + tile, x : x + tile].tobytes()
        for y in range(0, padded.shape[0], tile)
        for x in range(0, padded.shape[1], tile)
    ]
    if deflate:
        blocks = [zlib.compress(block) for block in blocks]
    offsets = np.cumsum([tiff_data_offset(), *map(len, blocks)])[:-1].tolist()
    page = _page(
        pixels,
        orientation,
        8 if deflate else 1,
        2,
        Tag(322, LONG, [tile]),
        Tag(323, LONG, [tile]),
        Tag(324, LONG, offsets),
        Tag(325, LONG, [len(block) for block in blocks]),
    )
    return tiff([page], data=b"".join(blocks))


def ycbcr_420_tiff(upright: Pixels, orientation: int) -> bytes:
    """A Deflate TIFF of YCbCr with 2x2 chroma subsampling, which Pillow decodes through
    libtiff's RGBA interface (libtiff's own orientation handling)."""
    pixels = stored(upright, orientation)
    height, width = pixels.shape[:2]
    ycc = np.asarray(Image.fromarray(pixels).convert("YCbCr"), dtype=np.float64)
    luma = ycc[..., 0].reshape(height // 2, 2, width // 2, 2).transpose(0, 2, 1, 3)
    chroma = ycc[..., 1:].reshape(height // 2, 2, width // 2, 2, 2).mean(axis=(1, 3))
    units = np.concatenate([luma.reshape(height // 2, width // 2, 4), chroma], axis=2)
    body = zlib.compress(np.round(units).astype(np.uint8).tobytes())
    page = _page(
        pixels,
        orientation,
        8,
        6,
        Tag(273, LONG, [tiff_data_offset()]),
        Tag(278, LONG, [height]),
        Tag(279, LONG, [len(body)]),
        Tag(530, SHORT, [2, 2]),
    )
    return tiff([page], data=body)


Encoder = Callable[[Pixels, int], bytes]
EXACT, JPEG, CHROMA = 1e-6, 0.03, 0.04  # mean absolute error in [0, 1]
CASES: dict[str, tuple[Encoder, float]] = {
    "png": (lambda a, o: with_exif(a, o, "PNG"), EXACT),
    "png, eXIf after the pixels": (png_exif_after_pixels, EXACT),
    "jpeg": (lambda a, o: with_exif(a, o, "JPEG", quality=95), JPEG),
    "webp lossless": (lambda a, o: with_exif(a, o, "WEBP", lossless=True), EXACT),
    "webp": (lambda a, o: with_exif(a, o, "WEBP", quality=95), JPEG),
    "tiff raw": (pillow_tiff, EXACT),
    "tiff lzw": (lambda a, o: pillow_tiff(a, o, compression="tiff_lzw"), EXACT),
    "tiff deflate": (lambda a, o: pillow_tiff(a, o, compression="tiff_adobe_deflate"), EXACT),
    "tiff packbits": (lambda a, o: pillow_tiff(a, o, compression="packbits"), EXACT),
    "tiff jpeg rgb": (lambda a, o: pillow_tiff(a, o, compression="jpeg", quality=95), JPEG),
    "tiff jpeg ycbcr": (
        lambda a, o: pillow_tiff(a, o, mode="YCbCr", compression="jpeg", quality=95),
        JPEG,
    ),
    "tiff lzw ycbcr": (lambda a, o: pillow_tiff(a, o, mode="YCbCr", compression="tiff_lzw"), JPEG),
    "tiff tiled raw": (lambda a, o: tiled_tiff(a, o, deflate=False), EXACT),
    "tiff tiled deflate": (lambda a, o: tiled_tiff(a, o, deflate=True), EXACT),
    "tiff deflate ycbcr 4:2:0": (ycbcr_420_tiff, CHROMA),
}
LOSSLESS = [name for name, (_, tolerance) in CASES.items() if tolerance == EXACT]


def as_pixels(tensor: torch.Tensor) -> torch.Tensor:
    """(3, H, W) in [0, 1] -> (H, W, 3) in [0, 1]."""
    return tensor.permute(1, 2, 0)


def error(tensor: torch.Tensor, upright: Pixels) -> float:
    return float((as_pixels(tensor) - torch.from_numpy(upright).float() / 255).abs().mean())


def test_a_wrong_turn_is_far_outside_every_tolerance() -> None:
    """The turns that keep the shape differ from upright by far more than any tolerance (a
    turn that swaps the sides fails on the shape)."""
    upright = torch.from_numpy(UPRIGHT).float() / 255
    for orientation in (2, 3, 4):
        turned = torch.from_numpy(stored(UPRIGHT, orientation)).float() / 255
        assert (turned - upright).abs().mean() > 3 * CHROMA


@pytest.mark.parametrize("orientation", ORIENTATIONS)
@pytest.mark.parametrize("case", list(CASES))
def test_every_format_decodes_upright_once(case: str, orientation: int) -> None:
    encoder, tolerance = CASES[case]
    data = encoder(UPRIGHT, orientation)
    asked: list[tuple[int, int]] = []

    def sizing(size: tuple[int, int]) -> tuple[int, int]:
        asked.append(size)
        return size

    decoded = decode_image(data, what="image", max_pixels=MAX_PIXELS, sizing=sizing)
    assert decoded.size == SHOWN
    assert asked and set(asked) == {SHOWN}  # no size as stored reaches the size policy
    assert decoded.tensor.shape == (3, SHOWN[1], SHOWN[0])
    assert error(decoded.tensor, UPRIGHT) <= tolerance


@pytest.mark.parametrize("orientation", [3, 6, 7])
@pytest.mark.parametrize("case", LOSSLESS)
def test_reduced_while_decoding_the_same_as_an_upright_png(case: str, orientation: int) -> None:
    """Asked for half the size, every lossless format gives the upright PNG's reduced pixels."""
    half = SHOWN  # BIG is twice SHOWN on each side

    def sizing(size: tuple[int, int]) -> tuple[int, int]:
        assert size == (BIG.shape[1], BIG.shape[0])
        return half

    expected = decode_image(encode(BIG), what="image", max_pixels=MAX_PIXELS, sizing=sizing)
    data = CASES[case][0](BIG, orientation)
    decoded = decode_image(data, what="image", max_pixels=MAX_PIXELS, sizing=sizing)
    assert decoded.size == expected.size == (BIG.shape[1], BIG.shape[0])
    assert decoded.tensor.shape == expected.tensor.shape == (3, half[1], half[0])
    assert torch.allclose(decoded.tensor, expected.tensor, atol=1e-6)


@pytest.mark.parametrize("orientation", [5, 6, 7, 8])
@pytest.mark.parametrize(
    "case",
    ["tiff raw", "tiff lzw", "tiff jpeg ycbcr", "tiff tiled raw", "png, eXIf after the pixels"],
)
def test_strict_policy_takes_a_turned_upload_of_the_reference_size(
    case: str, orientation: int
) -> None:
    reference = prepare_reference(encode(UPRIGHT), max_pixels=MAX_PIXELS, max_side=512)
    candidate = prepare_candidate(
        CASES[case][0](UPRIGHT, orientation),
        reference,
        max_pixels=MAX_PIXELS,
        size_policy="strict",
    )
    assert candidate.original_size == SHOWN
    assert error(candidate.tensor, UPRIGHT) <= CASES[case][1]


def dark(image: Image.Image) -> npt.NDArray[np.bool_]:
    return np.asarray(image.convert("L")) < 100


@pytest.mark.parametrize("orientation", ORIENTATIONS)
@pytest.mark.parametrize("case", ["tiff raw", "tiff lzw", "tiff tiled deflate", "png"])
def test_a_plane_is_turned_as_its_image_is_shown(case: str, orientation: int) -> None:
    data = CASES[case][0](UPRIGHT, orientation)
    plane = decode_plane(data, dark, what="mask", max_pixels=MAX_PIXELS)
    expected = dark(Image.fromarray(UPRIGHT))
    assert 0 < expected.sum() < expected.size
    assert np.array_equal(plane, expected)


def test_tiff_cases_store_what_they_say() -> None:
    """The TIFF cases reach the layouts they name: compression, photometric (2 RGB, 6 YCbCr),
    tiles, chroma subsampling."""
    ycc, ycc_420 = (6, (1, 1)), (6, (2, 2))
    expected: dict[str, tuple[int, tuple[int, Any], bool]] = {
        "tiff raw": (1, (2, None), False),
        "tiff lzw": (5, (2, None), False),
        "tiff deflate": (8, (2, None), False),
        "tiff packbits": (32773, (2, None), False),
        "tiff jpeg rgb": (7, (2, None), False),
        "tiff jpeg ycbcr": (7, ycc, False),
        "tiff lzw ycbcr": (5, ycc, False),
        "tiff tiled raw": (1, (2, None), True),
        "tiff tiled deflate": (8, (2, None), True),
        "tiff deflate ycbcr 4:2:0": (8, ycc_420, False),
    }
    assert set(expected) == {case for case in CASES if case.startswith("tiff")}
    for case, layout in expected.items():
        with Image.open(io.BytesIO(CASES[case][0](UPRIGHT, 6))) as image:
            assert isinstance(image, TiffImagePlugin.TiffImageFile)
            tags = image.tag_v2
            found = (tags[259], (tags[262], tags.get(530)), 322 in tags)
            assert (found, tags[274]) == (layout, 6), case
