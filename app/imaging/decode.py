"""Uploaded bytes -> an RGB float tensor in [0, 1], decoded no larger than it will be scored.

* Formats: PNG, JPEG (including camera MPO files), WebP, GIF (first frame only), BMP (not
  run-length encoded) and TIFF; ``app.imaging.formats`` screens the bytes first.
* Pixel limits, from the header before any pixel is decoded: one image at most ``max_pixels``
  (``SIMSCORE_MAX_PIXELS``); every image of a request together at most its pixel budget
  (``SIMSCORE_MAX_REQUEST_PIXELS``). Pillow's decompression-bomb error becomes
  ``ImageTooLarge`` too.
* Decode to the scored size: given the size it will be scored at, a JPEG is decoded with DCT
  scaling (Pillow's draft mode: 1/2, 1/4 or 1/8 while still at least that size) and any other
  image is box-reduced by an integer factor while still 8-bit, so a large upload never becomes a
  large float tensor. The final, exact resize is the caller's (``app.imaging.prepare``).
* EXIF orientation is applied; every size is the size after it. A PNG's eXIf chunk is found
  before decoding even where it follows the pixels. Pillow turns a TIFF upright itself as it
  loads it, whatever its compression or tiling, and drops its Orientation tag, so nothing more
  is turned (before Pillow 11.2.1 libtiff also turned a YCbCr TIFF not compressed as JPEG:
  pyproject.toml asks for 11.2.1). A TIFF's size as stored comes from its header, as Pillow
  reports a TIFF's size before loading as stored in some releases (10.4) and as shown in others
  (11.1, 13).
* Colour: one rule per pixel mode (``app.imaging.modes``; other modes are refused with 415):
  grayscale (``1``, ``L``) is replicated to three channels. 16-bit grayscale (``I;16*``, and
  ``I``) is divided by 65535, its true range; 32-bit float (``F``) is taken as already in [0, 1]
  and clipped. Palette, CMYK, YCbCr, LAB and HSV are converted by Pillow. Pillow opens
  16-bit-per-channel RGB/RGBA as 8-bit, so those are scored at 8-bit precision.
* Transparency is composited over WHITE: a fully transparent pixel scores as (1, 1, 1).
"""

from __future__ import annotations

import contextlib
import io
import re
import warnings
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import torch
from PIL import Image, ImageFile, TiffImagePlugin

from app.budgets import Budget
from app.errors import ImageTooLarge, NotAnImage
from app.imaging.formats import SUPPORTED_FORMATS, SUPPORTED_TEXT, screen
from app.imaging.modes import WIDE_GREY, eight_bit
from app.imaging.screens.png import png_exif

Size = tuple[int, int]  # (width, height)
Sizing = Callable[[Size], Size]  # oriented size as uploaded -> the size it will be scored at

_TRANSPOSE = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}
_EXIF_ORIENTATION = 0x0112


def quiet_pillow() -> None:
    """Silence Pillow's decompression-bomb warning for the process (called at start-up).

    We check pixel counts ourselves before decoding, so the warning adds nothing; one filter for
    the process replaces a lock around every ``Image.open`` (``warnings.catch_warnings`` changes
    process-wide state and is not thread-safe)."""
    warnings.filterwarnings("ignore", category=Image.DecompressionBombWarning)


@dataclass(frozen=True)
class Decoded:
    """A decoded image: at least the size asked for, at most the size uploaded."""

    tensor: torch.Tensor  # (3, H, W) float32 in [0, 1], contiguous, CPU
    size: Size  # (width, height) as uploaded, after EXIF orientation


def decode_image(
    data: bytes,
    *,
    what: str,
    max_pixels: int,
    budget: Budget | None = None,
    sizing: Sizing | None = None,
) -> Decoded:
    """Decode ``data`` (see the module docstring). ``sizing`` maps the uploaded size to the
    size it will be scored at (and may refuse it); without it the image is decoded whole."""
    if not data:
        raise NotAnImage(f"the {what} is empty (0 bytes); upload the image file itself")
    screen(data, what)
    with open_image(data, max_pixels, what) as image:
        if budget is not None:
            budget.take(image.width * image.height, what)
        stored = _stored_size(image)
        orientation = orientation_of(image, data)
        size, wanted = _plan(stored, orientation, sizing)
        if image.format in ("JPEG", "MPO"):
            image.draft(None, wanted)
        load_pixels(image, max_pixels, what)
        if (late := orientation_of(image)) != orientation:  # a TIFF Pillow turned as it loaded
            orientation = late
            size, wanted = _plan(image.size, orientation, sizing)
        reduced = _reduce(image, wanted, what)
        reduced = upright(reduced, orientation)
        return Decoded(_to_tensor(reduced, what), size)


def decode_plane(
    data: bytes,
    plane: Callable[[Image.Image], npt.NDArray[np.bool_]],
    *,
    what: str,
    max_pixels: int,
    budget: Budget | None = None,
) -> npt.NDArray[np.bool_]:
    """Decode ``data`` whole (screened, within the pixel limits), reduce it to one bool plane
    with ``plane`` (a mask's selection: ``app.scores.masks.selection``) and turn that plane as
    the image's EXIF orientation says it is shown: ``(H, W)`` as shown."""
    screen(data, what)
    with open_image(data, max_pixels, what) as image:
        if budget is not None:
            budget.take(image.width * image.height, what)
        load_pixels(image, max_pixels, what)
        selected = plane(image)
        orientation = orientation_of(image)
    if orientation not in _TRANSPOSE:
        return selected
    shown = upright(Image.fromarray(selected.astype(np.uint8) * 255), orientation)
    return np.asarray(shown) > 0


def upright(image: Image.Image, orientation: int) -> Image.Image:
    """``image`` turned as its EXIF ``orientation`` says it is shown."""
    return image.transpose(_TRANSPOSE[orientation]) if orientation in _TRANSPOSE else image


def _stored_size(image: Image.Image) -> Size:
    """(width, height) as stored, before orientation: a TIFF's from its header (see the module
    docstring), any other image's as Pillow reports it before loading."""
    if isinstance(image, TiffImagePlugin.TiffImageFile):
        tags = image.tag_v2
        return int(tags[TiffImagePlugin.IMAGEWIDTH]), int(tags[TiffImagePlugin.IMAGELENGTH])
    return image.size


def _plan(stored: Size, orientation: int, sizing: Sizing | None) -> tuple[Size, Size]:
    """The size as shown (after orientation) and the size wanted, as stored (before it)."""
    swapped = orientation in (5, 6, 7, 8)
    size = (stored[1], stored[0]) if swapped else stored
    wanted = sizing(size) if sizing else size
    return size, ((wanted[1], wanted[0]) if swapped else wanted)


def open_image(data: bytes, max_pixels: int, what: str) -> ImageFile.ImageFile:
    """Identify the image and check its header size; no pixel is decoded yet."""
    try:
        image = Image.open(io.BytesIO(data), formats=SUPPORTED_FORMATS)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        # (the warning arrives as an exception where warnings are errors: ``python -W error``)
        raise _too_large_from_pillow(exc, max_pixels, what) from exc
    except Exception as exc:
        raise NotAnImage(
            f"the {what} is not a {SUPPORTED_TEXT} image (or its header is corrupt); "
            f"it starts with {data[:8]!r}"
        ) from exc
    width, height = image.size
    if width * height > max_pixels:
        image.close()
        raise ImageTooLarge(
            f"the {what} is {width}x{height} = {width * height} pixels, over "
            f"SIMSCORE_MAX_PIXELS={max_pixels}; downscale it or raise SIMSCORE_MAX_PIXELS"
        )
    return image


def load_pixels(image: ImageFile.ImageFile, max_pixels: int, what: str) -> None:
    try:
        image.load()
    except Image.DecompressionBombError as exc:
        raise _too_large_from_pillow(exc, max_pixels, what) from exc
    except Exception as exc:  # Pillow's decoders raise OSError, ValueError, EOFError, ...
        raise NotAnImage(
            f"the {what} ({image.format}, {image.width}x{image.height}) could not be decoded: "
            f"{exc}; the file is probably truncated or corrupt, export it again"
        ) from exc


def orientation_of(image: Image.Image, data: bytes = b"") -> int:
    """The EXIF orientation still to apply, without decoding pixels (1 when absent or unreadable:
    a bad EXIF block is ignored). A PNG's EXIF is read from its eXIf chunk, found in ``data``
    (the file) when it follows the pixels: Pillow's own ``getexif`` would decode the whole image
    to look for it."""
    with contextlib.suppress(Exception):
        if image.format == "PNG":
            exif = Image.Exif()
            raw = image.info.get("exif") or png_exif(data)
            if raw:
                exif.load(raw)
        else:
            exif = image.getexif()
        value = int(exif.get(_EXIF_ORIENTATION, 1))
        return value if value in _TRANSPOSE else 1
    return 1


def _reduce(image: Image.Image, wanted: Size, what: str) -> Image.Image:
    """Box-reduce by the largest integer factors that keep at least ``wanted`` (in 8 bits, or
    in 32-bit integers or floats for 16-bit and float images)."""
    factors = (max(1, image.width // wanted[0]), max(1, image.height // wanted[1]))
    if factors == (1, 1):
        return image
    if image.mode in WIDE_GREY or image.mode == "F":
        if isinstance(image.info.get("transparency"), int):
            return image  # a transparent grey level: kept exact for _to_tensor
        wide = image if image.mode in ("I", "F") else image.convert("I")
        return wide.reduce(factors)
    return eight_bit(image, what).reduce(factors)


def _too_large_from_pillow(exc: Exception, max_pixels: int, what: str) -> ImageTooLarge:
    match = re.search(r"\((\d+) pixels\)", str(exc))
    count = f"{match.group(1)} pixels" if match else "more pixels than Pillow will decode"
    return ImageTooLarge(
        f"the {what} has {count}, over SIMSCORE_MAX_PIXELS={max_pixels} and Pillow's "
        "decompression-bomb limit; downscale it"
    )


def _to_tensor(image: Image.Image, what: str) -> torch.Tensor:
    """(3, H, W) float32 in [0, 1] from a loaded image of any supported mode."""
    mode = image.mode
    if mode in WIDE_GREY:
        values = np.asarray(image)
        gray = torch.from_numpy(values.astype(np.float32)).div_(65535.0).clamp_(0.0, 1.0)
        transparent = image.info.get("transparency")
        if isinstance(transparent, int):
            gray[torch.from_numpy(values == transparent)] = 1.0
        return _replicate(gray)
    if mode == "F":
        return _replicate(torch.from_numpy(np.array(image, dtype=np.float32)).clamp_(0.0, 1.0))
    image = eight_bit(image, what)
    if image.mode in ("LA", "RGBA"):
        rgba = _from_uint8(image if image.mode == "RGBA" else image.convert("RGBA"))
        # Over white: rgb * a + 1 * (1 - a) == (rgb - 1) * a + 1.
        return rgba[:3].sub_(1.0).mul_(rgba[3:]).add_(1.0)
    if image.mode == "L":
        return _replicate(_from_uint8(image)[0])
    return _from_uint8(image)


def _from_uint8(image: Image.Image) -> torch.Tensor:
    """(C, H, W) float32 in [0, 1] from an 8-bit image, in one vectorised copy."""
    pixels = torch.from_numpy(np.array(image))  # np.array: writable, unlike np.asarray here
    if pixels.ndim == 2:
        pixels = pixels.unsqueeze(2)
    out = torch.empty((pixels.shape[2], pixels.shape[0], pixels.shape[1]), dtype=torch.float32)
    out.copy_(pixels.permute(2, 0, 1))
    return out.div_(255.0)


def _replicate(gray: torch.Tensor) -> torch.Tensor:
    """Three channels as a view (no copy); ``prepare`` makes the scored tensor contiguous."""
    return gray.unsqueeze(0).expand(3, -1, -1)
