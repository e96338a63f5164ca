"""app.imaging.modes: every pixel mode Pillow can save (and the TIFF modes it only opens) is
either read by its documented rule, as an image and as a mask, or refused with 415 naming the
mode; never another error."""

from __future__ import annotations

import io
import warnings
from collections.abc import Callable, Iterator
from functools import partial

import numpy as np
import pytest
import torch
from PIL import Image

from app.errors import InvalidRequest, SimscoreError, UnsupportedImageFormat
from app.imaging import decode_image
from app.imaging.modes import eight_bit
from app.pipeline.decode import decode_mask
from app.scores.masks import selection
from devtools.structures import LONG, SHORT, Tag, tiff

MAX_PIXELS = 40_000_000
MODES = sorted(Image.MODES)  # every mode Pillow knows
FORMATS = ("PNG", "TIFF", "WEBP", "GIF", "BMP", "JPEG")


def _source(mode: str) -> Image.Image:
    """A 48x32 image in ``mode`` with content (a ramp, a zero column), as far as Pillow can make
    one."""
    ramp = np.zeros((32, 48, 4), np.uint8)
    ramp[..., 0] = np.arange(48)[None] * 5
    ramp[..., 1] = np.arange(32)[:, None] * 7
    ramp[..., 2] = 90
    ramp[..., 3] = np.arange(48)[None] * 5
    rgba = Image.fromarray(ramp, "RGBA")
    try:
        return rgba.convert(mode)
    except ValueError:
        return Image.new(mode, (48, 32))


def saved_files() -> Iterator[tuple[str, bytes]]:
    """(label, file) for every (format, mode) Pillow saves, with and without a transparent
    colour where the format keeps one, and the TIFF modes only hand-built files give."""
    seen: set[tuple[str, str, bool]] = set()
    for fmt in FORMATS:
        for mode in MODES:
            for transparency in (None, 0):
                image = _source(mode)
                options = {} if transparency is None else {"transparency": transparency}
                buffer = io.BytesIO()
                try:
                    with warnings.catch_warnings():
                        warnings.simplefilter("ignore")
                        image.save(buffer, fmt, **options)
                    opened = Image.open(io.BytesIO(buffer.getvalue()))
                except (OSError, ValueError, KeyError, TypeError):
                    continue  # Pillow does not save this mode in this format
                key = (fmt, opened.mode, "transparency" in opened.info)
                if key not in seen:
                    seen.add(key)
                    yield f"{fmt}-{mode}{'-t' if options else ''}->{opened.mode}", buffer.getvalue()
    yield "TIFF-La", premultiplied_grey_tiff(64, 128)


def premultiplied_grey_tiff(grey: int, alpha: int) -> bytes:
    """A 16x16 TIFF of premultiplied grey and alpha (Pillow opens it as ``La``)."""
    pixels = bytes([grey, alpha]) * 256
    page = [
        Tag(256, LONG, [16]),
        Tag(257, LONG, [16]),
        Tag(258, SHORT, [8, 8]),
        Tag(259, SHORT, [1]),
        Tag(262, SHORT, [1]),
        Tag(273, LONG, [8]),
        Tag(277, SHORT, [2]),
        Tag(278, LONG, [16]),
        Tag(279, LONG, [len(pixels)]),
        Tag(338, SHORT, [1]),  # extra sample: associated (premultiplied) alpha
    ]
    return tiff([page], data=pixels)


SAVED = dict(saved_files())


def test_the_enumeration_covers_the_awkward_modes() -> None:
    opened = {label.rsplit("->", 1)[-1] for label in SAVED}
    assert {"LAB", "CMYK", "YCbCr", "I;16", "I", "F", "PA", "1", "P", "LA"} <= opened
    assert "TIFF-La" in SAVED


def decode_tensor(
    data: bytes, sizing: Callable[[tuple[int, int]], tuple[int, int]] | None
) -> torch.Tensor:
    return decode_image(data, what="image", max_pixels=MAX_PIXELS, sizing=sizing).tensor


def attempt(fn: Callable[[], torch.Tensor]) -> torch.Tensor | SimscoreError:
    """What ``fn`` returns, or the refusal it raises (any other exception propagates)."""
    try:
        return fn()
    except (UnsupportedImageFormat, InvalidRequest) as exc:
        return exc


@pytest.mark.parametrize("label", list(SAVED))
def test_every_mode_decodes_or_is_refused_by_name(label: str) -> None:
    data = SAVED[label]
    mode = Image.open(io.BytesIO(data)).mode

    def third(size: tuple[int, int]) -> tuple[int, int]:
        return size[0] // 3, size[1] // 3

    for sizing in (None, third):  # whole, and box-reduced
        got = attempt(partial(decode_tensor, data, sizing))
        if isinstance(got, SimscoreError):
            assert isinstance(got, UnsupportedImageFormat) and repr(mode) in str(got)
        else:
            assert got.shape[0] == 3
            assert float(got.min()) >= 0.0 and float(got.max()) <= 1.0


@pytest.mark.parametrize("label", list(SAVED))
def test_every_mode_is_a_mask_or_is_refused_by_name(label: str) -> None:
    data = SAVED[label]
    mode = Image.open(io.BytesIO(data)).mode
    got = attempt(lambda: decode_mask(data, (24, 16), max_pixels=MAX_PIXELS))
    if isinstance(got, UnsupportedImageFormat):
        assert repr(mode) in str(got)
    elif isinstance(got, InvalidRequest):
        assert "selects no pixel" in str(got)
    else:
        assert isinstance(got, torch.Tensor)
        assert got.shape == (1, 16, 24) and got.dtype == torch.bool


# -- the rules ------------------------------------------------------------------------------


def halves(mode: str, off: tuple[int, ...] | int, on: tuple[int, ...] | int) -> Image.Image:
    """A 4x2 image in ``mode``: the left column pair ``off``, the right ``on``."""
    image = Image.new(mode, (4, 2), off)
    image.paste(on, (2, 0, 4, 2))
    return image


@pytest.mark.parametrize(
    ("mode", "off", "on"),
    [
        ("LAB", (0, 200, 30), (1, 128, 128)),  # L* band: dark with colour is still unselected
        ("YCbCr", (0, 40, 200), (1, 128, 128)),  # Y band
        ("HSV", (200, 255, 0), (0, 0, 1)),  # V band
        ("RGB", (0, 0, 0), (1, 0, 0)),  # any channel (luminance rounds (1, 0, 0) to 0)
        ("CMYK", (0, 0, 0, 255), (0, 0, 0, 254)),  # K = 255 is black
        ("I;16", 0, 1),
        ("F", 0, 0.001),
        ("LA", (255, 0), (0, 1)),  # alpha, not luminance
    ],
)
def test_mask_rules(mode: str, off: tuple[int, ...] | int, on: tuple[int, ...] | int) -> None:
    chosen = selection(halves(mode, off, on))
    assert chosen.tolist() == [[False, False, True, True]] * 2


def test_a_lab_tiff_mask_uses_its_lightness() -> None:
    data = io.BytesIO()
    halves("LAB", (0, 200, 30), (100, 128, 128)).resize((40, 20), Image.Resampling.NEAREST).save(
        data, "TIFF"
    )
    mask = decode_mask(data.getvalue(), (40, 20), max_pixels=MAX_PIXELS)
    assert mask[0, :, :20].sum() == 0 and bool(mask[0, :, 20:].all())


def test_a_float_mask_ignores_nan() -> None:
    values = np.array([[np.nan, 0.0, 1.0, -1.0]], np.float32)
    assert selection(Image.fromarray(values, "F")).tolist() == [[False, False, True, True]]


def test_premultiplied_grey_is_composited_over_white() -> None:
    """``La`` 64 at alpha 128 is 64/255 of colour plus (1 - 128/255) of white."""
    tensor = decode_image(premultiplied_grey_tiff(64, 128), what="image", max_pixels=MAX_PIXELS)
    expected = 64 / 255 + (1 - 128 / 255)
    assert torch.allclose(tensor.tensor, torch.full_like(tensor.tensor, expected), atol=2 / 255)


def test_a_mode_without_a_rule_is_refused_by_name() -> None:
    odd = Image.new("RGB", (4, 4))
    odd._mode = "XYZ;7"  # a mode a later Pillow might open; no rule here
    with pytest.raises(UnsupportedImageFormat, match=r"pixel mode 'XYZ;7'.*mask"):
        selection(odd)
    with pytest.raises(UnsupportedImageFormat, match="pixel mode 'XYZ;7'"):
        eight_bit(odd, "candidate image")
