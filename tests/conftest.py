"""Shared fixtures: a seeded VGG19 weights file loaded by path, the extractor and scorer built from
it, seeded AlexNet and VGG16 files and their networks (lpips, lpips_vgg, dists), and test
settings. Helpers (photographs, servers) live in ``tests/support``."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
from fastapi.testclient import TestClient
from torch import nn

from app.config import Settings
from app.models import registry
from app.models.vgg import VGGFeatures
from app.models.weights import load_features
from app.scoring import ModelRunner, Scorer
from devtools.packages import load_networks, seeded_backbone
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


@pytest.fixture(scope="session")
def seeded_backbones(
    tmp_path_factory: pytest.TempPathFactory,
) -> dict[str, tuple[Path, dict[str, torch.Tensor]]]:
    """Seeded random AlexNet and VGG16 ``features`` state_dicts (``devtools.packages.SEEDS``)
    saved like a user's files, by backbone name: each file and its state (for the reference
    packages' side)."""
    directory = tmp_path_factory.mktemp("backbones")
    return {
        spec.name: seeded_backbone(directory, spec) for spec in (registry.ALEXNET, registry.VGG16)
    }


@pytest.fixture(scope="session")
def backbone_files(
    seeded_backbones: dict[str, tuple[Path, dict[str, torch.Tensor]]],
) -> dict[str, Path]:
    """What ``SIMSCORE_ALEXNET_WEIGHTS`` / ``SIMSCORE_VGG16_WEIGHTS`` name in tests."""
    return {name: path for name, (path, _) in seeded_backbones.items()}


@pytest.fixture(scope="session")
def networks(backbone_files: dict[str, Path]) -> dict[str, nn.Module]:
    """The LPIPS AlexNet, LPIPS VGG16 and DISTS networks loaded from those files by the
    service's loading path, by registry network name (VGG16's two share its weights)."""
    return {
        name: module
        for spec in (registry.ALEXNET, registry.VGG16)
        for name, module in load_networks(backbone_files[spec.name], spec).items()
    }


@pytest.fixture
def make_settings(weights_file: Path) -> Callable[..., Settings]:
    """``settings_for(weights_file, **overrides)``."""

    def build(**overrides: Any) -> Settings:
        return settings_for(weights_file, **overrides)

    return build


@pytest.fixture
def network_settings(
    make_settings: Callable[..., Settings], backbone_files: dict[str, Path]
) -> Callable[..., Settings]:
    """Settings with every backbone loaded from its seeded file (every score available)."""

    def build(**overrides: Any) -> Settings:
        values: dict[str, Any] = {
            "alexnet_weights": str(backbone_files["alexnet"]),
            "vgg16_weights": str(backbone_files["vgg16"]),
        }
        return make_settings(**(values | overrides))

    return build


@pytest.fixture
def client(make_settings: Callable[..., Settings]) -> Iterator[TestClient]:
    with running_client(make_settings()) as test_client:
        yield test_client
