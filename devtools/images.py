"""Real photographs (scikit-image ships them; no network), the distortions renders and uploads
suffer, and encoders: one copy for the tests, the benchmarks, the load tooling and deploy checks.
"""

from __future__ import annotations

import functools
import io
from typing import Any

import numpy as np
import torch
from PIL import Image, ImageFilter
from skimage import data

PHOTOS: tuple[str, ...] = ("astronaut", "chelsea", "coffee", "rocket")
DISTORTIONS: tuple[str, ...] = ("jpeg", "blur", "noise", "colour")


@functools.cache
def _photo(name: str, size: int | None, keep_aspect: bool) -> np.ndarray:
    image = getattr(data, name)()
    if isinstance(image, tuple):  # stereo pairs
        image = image[0]
    if image.ndim == 2:
        image = np.stack([image] * 3, axis=-1)
    image = np.ascontiguousarray(image[..., :3])
    if size is not None:
        pil = Image.fromarray(image)
        if keep_aspect:
            scale = size / max(pil.size)
            target = (max(1, round(pil.width * scale)), max(1, round(pil.height * scale)))
        else:
            target = (size, size)
        image = np.asarray(pil.resize(target, Image.Resampling.LANCZOS))
    image.flags.writeable = False
    return image


def photo(name: str, size: int | None = None, *, keep_aspect: bool = False) -> np.ndarray:
    """A scikit-image photograph as read-only uint8 RGB ``(H, W, 3)``.

    ``size``: resize to ``size x size``, or with ``keep_aspect`` fit the longest side to it.
    """
    return _photo(name, size, keep_aspect)


def to_tensor(image: np.ndarray) -> torch.Tensor:
    """uint8 ``(H, W, 3)`` -> float32 ``(3, H, W)`` in [0, 1], as the service decodes it."""
    return torch.from_numpy(np.array(image)).permute(2, 0, 1).float().div(255).contiguous()


def encode(image: np.ndarray | Image.Image, fmt: str = "PNG", **options: Any) -> bytes:
    """Encode an array or a PIL image in ``fmt`` (PNG, JPEG, ...)."""
    pil = Image.fromarray(image) if isinstance(image, np.ndarray) else image
    buffer = io.BytesIO()
    pil.save(buffer, format=fmt, **options)
    return buffer.getvalue()


def photo_png(name: str, size: int = 96) -> bytes:
    """``photo(name, size, keep_aspect=True)`` as PNG bytes (96 px: fast on a CPU)."""
    return encode(photo(name, size, keep_aspect=True))


def solid_png(width: int, height: int, rgb: tuple[int, int, int] = (128, 128, 128)) -> bytes:
    return encode(np.full((height, width, 3), rgb, dtype=np.uint8))


def decode_png(payload: bytes) -> np.ndarray:
    """PNG bytes -> ``(H, W, 3)`` uint8, checking that it is a PNG."""
    with Image.open(io.BytesIO(payload)) as image:
        if image.format != "PNG":
            raise AssertionError(f"not a PNG: {image.format}")
        return np.asarray(image.convert("RGB"))


def distort(image: np.ndarray, kind: str, seed: int = 0, strength: float = 1.0) -> np.ndarray:
    """A candidate as a render or an upload changes it: ``jpeg``, ``blur``, ``noise`` or ``colour``.

    ``strength`` scales the distortion (1: JPEG q20, blur radius 2, noise sigma 12, a visible
    colour cast); ``seed`` fixes the noise.
    """
    rng = np.random.default_rng(seed)
    if kind == "jpeg":
        quality = int(np.clip(round(20 / strength), 2, 95))
        decoded = Image.open(io.BytesIO(encode(image, "JPEG", quality=quality))).convert("RGB")
        return np.array(decoded, dtype=np.uint8)
    if kind == "blur":
        return np.asarray(Image.fromarray(image).filter(ImageFilter.GaussianBlur(2 * strength)))
    if kind == "noise":
        noisy = image.astype(np.float64) + rng.normal(0, 12 * strength, image.shape)
        return np.clip(noisy, 0, 255).astype(np.uint8)
    if kind == "colour":
        gain = 1 + strength * np.array([0.1, -0.05, -0.15])
        shifted = image.astype(np.float64) * gain + strength * np.array([8, 0, -5])
        return np.clip(shifted, 0, 255).astype(np.uint8)
    raise ValueError(f"unknown distortion {kind!r}; choose from {', '.join(DISTORTIONS)}")


def photo_pair(side: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """A distinct pair per seed: a crop of a photograph (its offset set by the seed, so no two
    seeds share a reference) and a noisy copy of it, ``(3, side, side)`` each."""
    full = photo(PHOTOS[seed % len(PHOTOS)])
    height, width = full.shape[:2]
    crop = min(height, width) * 3 // 4
    step = seed // len(PHOTOS)
    top = (step * 7) % (height - crop + 1)
    left = (step * 13) % (width - crop + 1)
    region = np.ascontiguousarray(full[top : top + crop, left : left + crop])
    reference = np.asarray(Image.fromarray(region).resize((side, side), Image.Resampling.LANCZOS))
    candidate = distort(reference, "noise", seed=seed, strength=10 / 12)
    return to_tensor(reference), to_tensor(candidate)


def distorted_photos(side: int) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """Named (reference, candidate) photograph pairs of ``side`` px for the scores' reference
    comparisons: a JPEG-compressed candidate, blur, noise, a colour cast, and an odd-sized crop
    (77 x 103) with JPEG."""
    pairs = []
    for name, kind in (("astronaut", "jpeg"), ("coffee", "blur"), ("chelsea", "noise")):
        reference = photo(name, side)
        pairs.append((f"{name}-{kind}", reference, distort(reference, kind)))
    rocket = photo("rocket", side)
    pairs.append(("rocket-colour", rocket, distort(rocket, "colour")))
    crop = np.ascontiguousarray(photo("coffee")[37 : 37 + 77, 51 : 51 + 103])
    pairs.append(("coffee-crop-77x103-jpeg", crop, distort(crop, "jpeg", strength=0.5)))
    return pairs


def disc(height: int, width: int) -> np.ndarray:
    """A bool ``(height, width)`` disc off the image's centre: a region of interest for tests."""
    yy, xx = np.mgrid[:height, :width]
    inside: np.ndarray = (yy - height / 2) ** 2 + (xx - width / 2.5) ** 2 < (
        min(height, width) / 3
    ) ** 2
    return inside
