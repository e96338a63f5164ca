"""The reference packages (``lpips`` 0.1.4, ``DISTS_pytorch`` 0.1) built on given backbone
weights: ImageNet weights cannot be downloaded here, so both sides of a comparison get the same
seeded torchvision state_dict. Test and benchmark dependencies only; ``app`` never imports them.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any
from unittest import mock

import torch
import torchvision.models
from torch import nn

from app.models.spec import BackboneSpec
from app.models.weights import Loaded, load_backbone, random_state_dict, save_state_dict


def _load_slices(slices: list[nn.Module], state: dict[str, torch.Tensor]) -> None:
    """Each slice's children are named by their torchvision ``features`` index, so its
    state_dict keys are the features-only keys it holds."""
    for piece in slices:
        own = {key: value for key, value in state.items() if key in piece.state_dict()}
        missing = set(piece.state_dict()) - set(own)
        if missing:
            raise KeyError(f"state lacks {sorted(missing)}")
        piece.load_state_dict(own)


def reference_lpips(net: str, state: dict[str, torch.Tensor]) -> Any:
    """``lpips.LPIPS(net=net, version='0.1')`` with its linear layers from the wheel and the
    backbone's ``features`` from ``state`` (features-only torchvision keys)."""
    import lpips

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = lpips.LPIPS(pnet_rand=True, net=net, version="0.1", verbose=False)
    pieces = [getattr(model.net, f"slice{k}") for k in range(1, model.net.N_slices + 1)]
    _load_slices(pieces, state)
    return model.eval()


def reference_dists(state: dict[str, torch.Tensor]) -> Any:
    """``DISTS_pytorch.DISTS()`` (its alpha/beta from the wheel) on a VGG16 whose ``features``
    are ``state``: torchvision's ``vgg16`` is patched while DISTS builds itself."""
    from DISTS_pytorch import DISTS

    original = torchvision.models.vgg16

    def vgg16(*args: object, **kwargs: object) -> nn.Module:
        model = original(weights=None)
        model.features.load_state_dict(state)  # strict: features[30] is a max pool
        built: nn.Module = model
        return built

    with mock.patch.object(torchvision.models, "vgg16", vgg16):
        model = DISTS()
    return model.eval()


SEEDS = {"alexnet": 11, "vgg16": 12}


def seeded_backbone(
    directory: Path, backbone: BackboneSpec
) -> tuple[Path, dict[str, torch.Tensor]]:
    """A seeded random ``features`` state_dict of ``backbone`` saved like a user's file, and the
    state itself (for the reference package's side)."""
    state = random_state_dict(SEEDS[backbone.name], backbone)
    path = directory / f"{backbone.name}-seeded.pth"
    save_state_dict(state, path)
    return path, state


def load_networks(path: Path, backbone: BackboneSpec) -> dict[str, nn.Module]:
    """``backbone``'s networks by name, its weights loaded from ``path`` by the service's path."""
    loaded = load_backbone(backbone, str(path))
    if not isinstance(loaded, Loaded):
        raise RuntimeError(loaded.message)
    return {network.name: network.build(loaded.features) for network in backbone.networks}
