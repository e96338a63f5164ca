"""LPIPS and DISTS on both sides: simscore's networks loaded from a seeded file by the service's
loading path, and the reference packages given the same backbone state_dict."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest
import torch
from torch import nn

from app.models import registry
from app.models.alexnet import ALEXNET_CHANNELS
from app.models.dists import DISTS_CHANNELS
from app.models.vgg16 import VGG16_CHANNELS
from app.models.weights import load_dists_head, load_lpips_head
from devtools.images import distorted_photos, to_tensor
from devtools.packages import (
    load_networks,
    reference_dists,
    reference_lpips,
    seeded_backbone,
)

SIDE = 96


@dataclass(frozen=True)
class LpipsSides:
    network: nn.Module
    heads: list[torch.Tensor]
    reference: Any  # lpips.LPIPS
    spatial: Any  # the same with spatial=True


@dataclass(frozen=True)
class DistsSides:
    network: nn.Module
    alpha: torch.Tensor
    beta: torch.Tensor
    reference: Any  # DISTS_pytorch.DISTS


@pytest.fixture(scope="session")
def lpips_alex(tmp_path_factory: pytest.TempPathFactory) -> LpipsSides:
    path, state = seeded_backbone(tmp_path_factory.mktemp("alexnet"), registry.ALEXNET)
    spatial = reference_lpips("alex", state)
    spatial.spatial = True
    return LpipsSides(
        load_networks(path, registry.ALEXNET)["lpips_alexnet"],
        load_lpips_head(registry.LPIPS_ALEX_HEAD, ALEXNET_CHANNELS),
        reference_lpips("alex", state),
        spatial,
    )


@pytest.fixture(scope="session")
def vgg16_file(tmp_path_factory: pytest.TempPathFactory) -> tuple[Any, dict[str, torch.Tensor]]:
    return seeded_backbone(tmp_path_factory.mktemp("vgg16"), registry.VGG16)


@pytest.fixture(scope="session")
def lpips_vgg(vgg16_file: tuple[Any, dict[str, torch.Tensor]]) -> LpipsSides:
    path, state = vgg16_file
    spatial = reference_lpips("vgg", state)
    spatial.spatial = True
    return LpipsSides(
        load_networks(path, registry.VGG16)["lpips_vgg16"],
        load_lpips_head(registry.LPIPS_VGG_HEAD, VGG16_CHANNELS),
        reference_lpips("vgg", state),
        spatial,
    )


@pytest.fixture(scope="session")
def dists_sides(vgg16_file: tuple[Any, dict[str, torch.Tensor]]) -> DistsSides:
    path, state = vgg16_file
    alpha, beta = load_dists_head(registry.DISTS_HEAD, DISTS_CHANNELS)
    return DistsSides(
        load_networks(path, registry.VGG16)["dists_vgg16"], alpha, beta, reference_dists(state)
    )


def photo_pairs() -> list[tuple[str, torch.Tensor, torch.Tensor]]:
    """``devtools.images.distorted_photos`` as ``(1, 3, H, W)`` tensors."""
    return [(name, to_tensor(x)[None], to_tensor(y)[None]) for name, x, y in distorted_photos(SIDE)]


PAIRS = photo_pairs()
PAIR_IDS = [name for name, _, _ in PAIRS]
