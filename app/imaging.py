"""Uploaded bytes -> RGB float tensors in [0, 1], and the size policy that pairs them.

Policy:

* Formats: PNG, JPEG (including camera MPO files), WebP, GIF (first frame only), BMP and TIFF.
  SVG/XML, PDF and PostScript are refused with ``UnsupportedImageFormat``; anything Pillow cannot
  identify, and empty, truncated or corrupt files, with ``NotAnImage``.
* Pixel limit: the width x height from the header is checked against ``max_pixels``
  (``SIMSCORE_MAX_PIXELS``) before any pixel is decoded, so a decompression bomb is refused without
  allocating it. Pillow's own ``DecompressionBombError`` also becomes ``ImageTooLarge``, and its
  ``DecompressionBombWarning`` is silenced locally (the global ``Image.MAX_IMAGE_PIXELS`` is left
  alone).
* EXIF orientation is applied first; every size below is the size after it.
* Colour: grayscale (``1``, ``L``) is replicated to three channels. 16-bit grayscale (``I;16*``,
  and ``I`` as older Pillow opens 16-bit PNGs) is divided by 65535, its true range, not clipped to
  8 bits; 32-bit float (``F``) is taken as already in [0, 1] and clipped. Palette, CMYK (Adobe's
  inverted JPEG CMYK is undone by Pillow's decoder), YCbCr, LAB and HSV are converted by Pillow.
  Pillow opens 16-bit-per-channel RGB/RGBA (48/64-bit PNG, 16-bit RGB TIFF) as 8-bit ``RGB``/
  ``RGBA``, keeping the high byte; those images are therefore scored at 8-bit precision.
* Transparency (alpha channels, and palette/gray/RGB images with a transparent colour) is
  composited over WHITE: a fully transparent pixel scores as (1, 1, 1).
* Size: a side under ``MIN_SIDE`` px is refused with ``ImageTooSmall``. A longest side over
  ``max_side`` is downscaled to it, aspect kept (short side rounded, at least 1 px, and again at
  least ``MIN_SIDE``). A candidate whose size differs from its reference's is, under the ``resize``
  policy, resized to the reference's (already fitted) size; under ``strict`` it is refused with
  ``SizeMismatch``. Resizing is antialiased bilinear.
"""

from __future__ import annotations

import contextlib
import io
import re
import threading
import warnings
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageFile, ImageOps

from app.errors import (
    ImageTooLarge,
    ImageTooSmall,
    InvalidRequest,
    NotAnImage,
    SizeMismatch,
    UnsupportedImageFormat,
)

MIN_SIDE: int = 16
SUPPORTED_FORMATS: tuple[str, ...] = ("PNG", "JPEG", "WEBP", "GIF", "BMP", "TIFF")
_SUPPORTED_TEXT = "PNG, JPEG, WebP, GIF, BMP or TIFF"
_TOO_SMALL_WHY = (
    "VGG19 to relu5_1 pools four times and SSIM needs an 11 px window; "
    "the smallest side must be at least 16 px"
)
_SIXTEEN_BIT_MODES = frozenset({"I;16", "I;16L", "I;16B", "I;16N", "I"})
# Text formats someone may mistake for images; matched after an optional BOM and whitespace.
_REFUSED_PREFIXES: tuple[tuple[bytes, str], ...] = (
    (b"<svg", "SVG"),
    (b"<?xml", "XML/SVG"),
    (b"<!doctype svg", "SVG"),
    (b"%pdf", "PDF"),
    (b"%!ps", "PostScript"),
)
# warnings.catch_warnings swaps process-wide state; the lock keeps our decode threads from
# interleaving it. Only Image.open (header parsing) runs under it.
_OPEN_LOCK = threading.Lock()

SizePolicy = Literal["resize", "strict"]


@dataclass(frozen=True, eq=False)
class PreparedImage:
    """A decoded image ready for scoring."""

    tensor: torch.Tensor  # (3, H, W) float32 in [0, 1], contiguous, CPU
    original_size: tuple[int, int]  # (width, height) after EXIF orientation, before any resize
    resized: bool  # max-side downscale or size-policy resize happened

    @property
    def width(self) -> int:
        return int(self.tensor.shape[2])

    @property
    def height(self) -> int:
        return int(self.tensor.shape[1])


def decode_image(data: bytes, *, max_pixels: int) -> tuple[torch.Tensor, tuple[int, int]]:
    """Decode ``data`` to a (3, H, W) float32 tensor in [0, 1] and its (width, height)."""
    return _decode(data, max_pixels, "image")


def prepare_reference(data: bytes, *, max_pixels: int, max_side: int) -> PreparedImage:
    """Decode a reference image and fit its longest side to ``max_side``."""
    what = "reference image"
    tensor, size = _decode(data, max_pixels, what)
    _check_min_side(size, what)
    target = _fit_size(size, max_side)
    if target == size:
        return PreparedImage(tensor, size, resized=False)
    _check_min_side(
        target, what, f" after downscaling {_wxh(size)} to SIMSCORE_MAX_SIDE={max_side}"
    )
    return PreparedImage(resize(tensor, (target[1], target[0])), size, resized=True)


def prepare_candidate(
    data: bytes,
    reference: PreparedImage,
    *,
    max_pixels: int,
    max_side: int,
    size_policy: SizePolicy,
) -> PreparedImage:
    """Decode a candidate and bring it to ``reference``'s tensor size under ``size_policy``."""
    if size_policy not in ("resize", "strict"):
        raise InvalidRequest(f"size_policy must be 'resize' or 'strict', not {size_policy!r}")
    what = "candidate image"
    tensor, size = _decode(data, max_pixels, what)
    _check_min_side(size, what)
    if size != reference.original_size and size_policy == "strict":
        raise SizeMismatch(
            f"the candidate image is {_wxh(size)} px but the reference image is "
            f"{_wxh(reference.original_size)} px (after EXIF orientation); send images of the "
            "same size or use size_policy=resize"
        )
    # Same original size -> the same max-side fit as the reference; otherwise resize to it.
    target = (reference.height, reference.width)
    if tuple(tensor.shape[1:]) == target:
        return PreparedImage(tensor, size, resized=False)
    return PreparedImage(resize(tensor, target), size, resized=True)


def prepare_pair(
    reference: bytes,
    candidate: bytes,
    *,
    max_pixels: int,
    max_side: int,
    size_policy: SizePolicy,
) -> tuple[PreparedImage, PreparedImage]:
    """Prepare a reference and a candidate whose tensors have the same size."""
    prepared = prepare_reference(reference, max_pixels=max_pixels, max_side=max_side)
    return prepared, prepare_candidate(
        candidate, prepared, max_pixels=max_pixels, max_side=max_side, size_policy=size_policy
    )


def resize(tensor: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """(3, H, W) -> (3, h, w) for ``size=(h, w)``: antialiased bilinear, clamped to [0, 1]."""
    if tuple(tensor.shape[1:]) == size:
        return tensor
    out = F.interpolate(
        tensor.unsqueeze(0), size=size, mode="bilinear", antialias=True, align_corners=False
    )
    return out.squeeze(0).clamp_(0.0, 1.0).contiguous()


def _decode(data: bytes, max_pixels: int, what: str) -> tuple[torch.Tensor, tuple[int, int]]:
    if not data:
        raise NotAnImage(f"the {what} is empty (0 bytes); upload the image file itself")
    _refuse_known_unsupported(data, what)
    with _open(data, max_pixels, what) as image:
        try:
            image.load()
        except Image.DecompressionBombError as exc:
            raise _too_large_from_pillow(exc, max_pixels, what) from exc
        except Exception as exc:  # Pillow's decoders raise OSError, ValueError, EOFError, ...
            raise NotAnImage(
                f"the {what} ({image.format}, {_wxh(image.size)}) could not be decoded: {exc}; "
                "the file is probably truncated or corrupt, export it again"
            ) from exc
        # A malformed EXIF block leaves the stored orientation rather than refusing the image.
        with contextlib.suppress(Exception):
            ImageOps.exif_transpose(image, in_place=True)
        return _to_tensor(image, what), image.size


def _refuse_known_unsupported(data: bytes, what: str) -> None:
    head = data[:256].removeprefix(b"\xef\xbb\xbf").lstrip().lower()
    for prefix, name in _REFUSED_PREFIXES:
        if head.startswith(prefix):
            raise UnsupportedImageFormat(
                f"the {what} is {name}, which is not supported; "
                f"convert it to {_SUPPORTED_TEXT} (raster) first"
            )


def _open(data: bytes, max_pixels: int, what: str) -> ImageFile.ImageFile:
    """Identify the image and check its header size; no pixel is decoded yet."""
    try:
        with _OPEN_LOCK, warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data), formats=SUPPORTED_FORMATS)
    except Image.DecompressionBombError as exc:
        raise _too_large_from_pillow(exc, max_pixels, what) from exc
    except Exception as exc:
        raise NotAnImage(
            f"the {what} is not a {_SUPPORTED_TEXT} image (or its header is corrupt); "
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
    if mode in _SIXTEEN_BIT_MODES:
        values = np.asarray(image)
        gray = torch.from_numpy(values.astype(np.float32)).div_(65535.0).clamp_(0.0, 1.0)
        transparent = image.info.get("transparency")
        if isinstance(transparent, int):
            gray[torch.from_numpy(values == transparent)] = 1.0
        return _replicate(gray)
    if mode == "F":
        return _replicate(torch.from_numpy(np.array(image, dtype=np.float32)).clamp_(0.0, 1.0))
    try:
        if image.has_transparency_data:
            rgba = _from_uint8(image if mode == "RGBA" else image.convert("RGBA"))
            # Over white: rgb * a + 1 * (1 - a) == (rgb - 1) * a + 1.
            return rgba[:3].sub_(1.0).mul_(rgba[3:]).add_(1.0)
        if mode in ("L", "1"):
            return _replicate(_from_uint8(image if mode == "L" else image.convert("L"))[0])
        return _from_uint8(image if mode == "RGB" else image.convert("RGB"))
    except ValueError as exc:  # a mode Pillow cannot convert
        raise UnsupportedImageFormat(
            f"the {what} uses the pixel mode {mode!r}, which cannot be converted to RGB; "
            f"save it as 8-bit RGB {_SUPPORTED_TEXT}"
        ) from exc


def _from_uint8(image: Image.Image) -> torch.Tensor:
    """(C, H, W) float32 in [0, 1] from an 8-bit image, in one vectorised copy."""
    pixels = torch.from_numpy(np.array(image))  # np.array: writable, unlike np.asarray here
    if pixels.ndim == 2:
        pixels = pixels.unsqueeze(2)
    out = torch.empty((pixels.shape[2], pixels.shape[0], pixels.shape[1]), dtype=torch.float32)
    out.copy_(pixels.permute(2, 0, 1))
    return out.div_(255.0)


def _replicate(gray: torch.Tensor) -> torch.Tensor:
    return gray.unsqueeze(0).expand(3, -1, -1).contiguous()


def _fit_size(size: tuple[int, int], max_side: int) -> tuple[int, int]:
    """(width, height) with the longest side at most ``max_side``, aspect kept."""
    width, height = size
    longest = max(width, height)
    if longest <= max_side:
        return size
    scale = max_side / longest
    if width >= height:
        return max_side, max(1, round(height * scale))
    return max(1, round(width * scale)), max_side


def _check_min_side(size: tuple[int, int], what: str, after: str = "") -> None:
    if min(size) < MIN_SIDE:
        raise ImageTooSmall(f"the {what} is {_wxh(size)} px{after}: {_TOO_SMALL_WHY}")


def _wxh(size: tuple[int, int]) -> str:
    return f"{size[0]}x{size[1]}"


__all__ = [
    "MIN_SIDE",
    "SUPPORTED_FORMATS",
    "PreparedImage",
    "SizePolicy",
    "decode_image",
    "prepare_candidate",
    "prepare_pair",
    "prepare_reference",
    "resize",
]
