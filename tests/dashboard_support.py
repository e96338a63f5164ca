"""Helpers for the dashboard, client, auth, OpenAPI and web tests (plain functions; the seeded
weights file comes from conftest's session fixture ``weights_file``).

Settings that skip warm-up, an app started with its lifespan, and real photographs from
scikit-image, downscaled with their aspect kept.
"""

from __future__ import annotations

import functools
import io
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import skimage.data
from fastapi.testclient import TestClient
from PIL import Image

from app.config import Settings
from app.main import create_app

PHOTOS = ("astronaut", "chelsea", "coffee")


def dashboard_settings(weights_file: Path, **overrides: Any) -> Settings:
    """Small, fast settings: CPU, no warm-up, batches of up to 8 waiting up to 20 ms, no keys,
    no CORS, no reference cache (so each request computes its reference)."""
    values: dict[str, Any] = {
        "weights": str(weights_file),
        "warmup_sides": [],
        "max_batch_size": 8,
        "max_wait_ms": 20,
        "device": "cpu",
        "api_keys": [],
        "cors_origins": [],
        "reference_cache_size": 0,
    }
    values.update(overrides)
    return Settings(_env_file=None, **values)


@contextmanager
def running_client(settings: Settings) -> Iterator[TestClient]:
    """A ``TestClient`` whose app has run its lifespan (model loaded, batcher started)."""
    with TestClient(create_app(settings)) as client:
        yield client


@functools.cache
def photo_array(name: str, side: int = 96) -> np.ndarray:
    """A scikit-image photograph (no network) with its longest side resized to ``side``."""
    image = Image.fromarray(getattr(skimage.data, name)())
    scale = side / max(image.size)
    size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
    return np.asarray(image.resize(size, Image.Resampling.LANCZOS))


def png_bytes(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, "PNG")
    return buffer.getvalue()


def photo_png(name: str, side: int = 96) -> bytes:
    """``photo_array`` as PNG bytes."""
    return png_bytes(photo_array(name, side))


def solid_png(width: int, height: int, rgb: tuple[int, int, int] = (128, 128, 128)) -> bytes:
    return png_bytes(np.full((height, width, 3), rgb, dtype=np.uint8))


def decode_png(data: bytes) -> np.ndarray:
    """PNG bytes -> (H, W, 3) uint8, checking that it is a PNG."""
    with Image.open(io.BytesIO(data)) as image:
        if image.format != "PNG":
            raise AssertionError(f"not a PNG: {image.format}")
        return np.asarray(image.convert("RGB"))
