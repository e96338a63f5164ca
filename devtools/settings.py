"""Seeded weights saved like a user's file, and test settings with one set of defaults."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from app.config import Settings
from app.models.weights import random_state_dict, save_state_dict

WEIGHTS_SEED = 1234
# The optional backbones are absent unless a test loads them (a file that does not exist, so that
# a torch hub cache on the machine cannot make them present): their scores are unavailable.
ABSENT_ALEXNET = "/nonexistent/simscore-tests/alexnet.pth"
ABSENT_VGG16 = "/nonexistent/simscore-tests/vgg16.pth"


def write_seeded_weights(path: Path, seed: int = WEIGHTS_SEED) -> Path:
    """A seeded, randomly initialised VGG19 ``features`` state_dict at ``path`` (kept if there)."""
    if not path.exists():
        save_state_dict(random_state_dict(seed), path)
    return path


def settings_for(weights_file: Path, **overrides: Any) -> Settings:
    """Small, fast settings: CPU, the seeded file, no warm-up, batches of up to 8 waiting up to
    10 ms, no keys, no CORS, no ``.env``, AlexNet and VGG16 absent. Each test overrides what it
    is about."""
    values: dict[str, Any] = {
        "weights": str(weights_file),
        "alexnet_weights": ABSENT_ALEXNET,
        "vgg16_weights": ABSENT_VGG16,
        "device": "cpu",
        "warmup_sides": [],
        "max_batch_size": 8,
        "max_wait_ms": 10,
        "request_timeout_s": 60,
        "drain_timeout_s": 60,
        "api_keys": [],
        "cors_origins": [],
    }
    values.update(overrides)
    return Settings(_env_file=None, **values)
