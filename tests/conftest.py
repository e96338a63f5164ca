"""Shared fixtures: a seeded VGG19 weights file loaded by path, real photographs, settings."""

from __future__ import annotations

import io
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from fastapi.testclient import TestClient
from PIL import Image
from skimage import data

from app.config import Settings
from app.main import create_app
from app.models.vgg import VGGFeatures
from app.models.weights import load_features, random_state_dict, save_state_dict
from app.scoring import Scorer

WEIGHTS_SEED = 1234


@pytest.fixture(scope="session")
def weights_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A seeded, randomly initialised VGG19 ``features`` state_dict saved like a user's file."""
    path = tmp_path_factory.mktemp("weights") / "vgg19-seeded.pth"
    save_state_dict(random_state_dict(WEIGHTS_SEED), path)
    return path


@pytest.fixture(scope="session")
def extractor(weights_file: Path) -> VGGFeatures:
    features, _ = load_features(str(weights_file))
    return VGGFeatures(features)


@pytest.fixture(scope="session")
def scorer(extractor: VGGFeatures) -> Scorer:
    return Scorer(extractor, device=torch.device("cpu"))


def photo(name: str, side: int | None = None) -> np.ndarray:
    """A scikit-image photograph as uint8 RGB, optionally resized to ``side`` x ``side``."""
    image = getattr(data, name)()
    if image.ndim == 2:
        image = np.stack([image] * 3, axis=-1)
    if side is not None:
        image = np.asarray(Image.fromarray(image).resize((side, side), Image.Resampling.LANCZOS))
    return np.ascontiguousarray(image)


def to_tensor(image: np.ndarray) -> torch.Tensor:
    """uint8 (H, W, 3) -> float32 (3, H, W) in [0, 1]."""
    return torch.from_numpy(np.array(image)).permute(2, 0, 1).float().div(255).contiguous()


def encode(image: np.ndarray, fmt: str = "PNG", **kwargs: Any) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format=fmt, **kwargs)
    return buffer.getvalue()


def distort(image: np.ndarray, kind: str, seed: int = 0) -> np.ndarray:
    """Real-world distortions: jpeg, blur, noise, colour."""
    rng = np.random.default_rng(seed)
    if kind == "jpeg":
        decoded = Image.open(io.BytesIO(encode(image, "JPEG", quality=20))).convert("RGB")
        return np.array(decoded, dtype=np.uint8)
    if kind == "blur":
        from PIL import ImageFilter

        return np.asarray(Image.fromarray(image).filter(ImageFilter.GaussianBlur(2)))
    if kind == "noise":
        noisy = image.astype(np.float64) + rng.normal(0, 12, image.shape)
        clipped: np.ndarray = np.clip(noisy, 0, 255).astype(np.uint8)
        return clipped
    if kind == "colour":
        shifted = image.astype(np.float64) * np.array([1.1, 0.95, 0.85]) + np.array([8, 0, -5])
        moved: np.ndarray = np.clip(shifted, 0, 255).astype(np.uint8)
        return moved
    raise ValueError(kind)


@pytest.fixture
def make_settings(weights_file: Path) -> Callable[..., Settings]:
    def build(**overrides: Any) -> Settings:
        values: dict[str, Any] = {
            "weights": str(weights_file),
            "device": "cpu",
            "warmup_sides": [],
            "max_batch_size": 8,
            "max_wait_ms": 10,
            "request_timeout_s": 60,
            "drain_timeout_s": 60,
        }
        values.update(overrides)
        return Settings(_env_file=None, **values)

    return build


@pytest.fixture
def client(make_settings: Callable[..., Settings]) -> Iterator[TestClient]:
    with TestClient(create_app(make_settings())) as test_client:
        yield test_client
