"""Shared fixtures: a seeded VGG19 weights file loaded by path, the extractor and scorer built from
it, and test settings. Helpers (photographs, servers) live in ``tests/support``."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
from fastapi.testclient import TestClient

from app.config import Settings
from app.models.vgg import VGGFeatures
from app.models.weights import load_features
from app.scoring import ModelRunner, Scorer
from devtools.servers import running_client
from devtools.settings import settings_for, write_seeded_weights


@pytest.fixture(scope="session")
def weights_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A seeded, randomly initialised VGG19 ``features`` state_dict saved like a user's file."""
    return write_seeded_weights(tmp_path_factory.mktemp("weights") / "vgg19-seeded.pth")


@pytest.fixture(scope="session")
def extractor(weights_file: Path) -> VGGFeatures:
    features, _ = load_features(str(weights_file))
    return VGGFeatures(features)


@pytest.fixture(scope="session")
def scorer(extractor: VGGFeatures) -> Scorer:
    return Scorer(ModelRunner(extractor, device=torch.device("cpu")))


@pytest.fixture
def make_settings(weights_file: Path) -> Callable[..., Settings]:
    """``settings_for(weights_file, **overrides)``."""

    def build(**overrides: Any) -> Settings:
        return settings_for(weights_file, **overrides)

    return build


@pytest.fixture
def client(make_settings: Callable[..., Settings]) -> Iterator[TestClient]:
    with running_client(make_settings()) as test_client:
        yield test_client
