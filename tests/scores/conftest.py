"""LPIPS and DISTS on both sides: simscore's networks loaded from a seeded file by the service's
loading path, and the reference packages given the same backbone state_dict."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest
import torch
from torch import nn

from app.models import registry
from app.models.alexnet import ALEXNET_CHANNELS
from app.models.dists import DISTS_CHANNELS
from app.models.vgg16 import VGG16_CHANNELS
from app.models.weights import load_dists_head, load_lpips_head
from devtools.images import distort, photo, to_tensor
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
    """Photographs and their distorted copies, ``(1, 3, H, W)`` each: a JPEG-compressed
    candidate, blur, noise, a colour cast, and an odd-sized crop (77 x 103) with JPEG."""
    pairs = []
    for name, kind in (("astronaut", "jpeg"), ("coffee", "blur"), ("chelsea", "noise")):
        reference = photo(name, SIDE)
        pairs.append((f"{name}-{kind}", reference, distort(reference, kind)))
    rocket = photo("rocket", SIDE)
    pairs.append(("rocket-colour", rocket, distort(rocket, "colour")))
    crop = np.ascontiguousarray(photo("coffee")[37 : 37 + 77, 51 : 51 + 103])
    pairs.append(("coffee-crop-77x103-jpeg", crop, distort(crop, "jpeg", strength=0.5)))
    return [(name, to_tensor(x)[None], to_tensor(y)[None]) for name, x, y in pairs]


PAIRS = photo_pairs()
PAIR_IDS = [name for name, _, _ in PAIRS]
