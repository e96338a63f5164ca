"""The LPIPS and DISTS networks: torchvision's layers and keys, the reference packages' taps and
pooling, the input left untouched, and the smallest side each accepts."""

from __future__ import annotations

import warnings

import pytest
import torch
from DISTS_pytorch.DISTS_pt import L2pooling
from torch import nn
from torchvision.models import alexnet, vgg16

from app.models import registry
from app.models.alexnet import ALEXNET_CHANNELS, build_alexnet_features, lpips_alexnet
from app.models.dists import DISTS_CHANNELS, L2Pooling, dists_vgg16
from app.models.taps import TapNetwork
from app.models.vgg16 import VGG16_CHANNELS, build_vgg16_features, lpips_vgg16
from app.models.weights import random_state_dict
from devtools.packages import reference_dists, reference_lpips


def same_layers(ours: nn.Sequential, theirs: nn.Sequential) -> None:
    assert [repr(layer) for layer in ours] == [repr(layer) for layer in theirs]
    assert {k: v.shape for k, v in ours.state_dict().items()} == {
        k: v.shape for k, v in theirs.state_dict().items()
    }


def test_alexnet_features_are_torchvisions_up_to_relu5() -> None:
    same_layers(build_alexnet_features(), alexnet(weights=None).features[:12])


def test_vgg16_features_are_torchvisions_up_to_relu5_3() -> None:
    same_layers(build_vgg16_features(), vgg16(weights=None).features[:30])


@pytest.fixture(scope="module")
def states() -> dict[str, dict[str, torch.Tensor]]:
    return {
        "alex": random_state_dict(5, registry.ALEXNET),
        "vgg": random_state_dict(6, registry.VGG16),
    }


def built(net: str, state: dict[str, torch.Tensor]) -> TapNetwork:
    features = build_alexnet_features() if net == "alex" else build_vgg16_features()
    features.load_state_dict(state)
    return lpips_alexnet(features) if net == "alex" else lpips_vgg16(features)


@pytest.mark.parametrize("net", ["alex", "vgg"])
def test_lpips_taps_are_the_packages(net: str, states: dict[str, dict[str, torch.Tensor]]) -> None:
    reference = reference_lpips(net, states[net])
    x = torch.rand(2, 3, 67, 80, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        theirs = reference.net(reference.scaling_layer(2 * x - 1))
        ours = built(net, states[net])(x)
    channels = ALEXNET_CHANNELS if net == "alex" else VGG16_CHANNELS
    assert [t.shape[1] for t in ours] == list(channels)
    for a, b in zip(ours, theirs, strict=True):
        assert torch.equal(a, b)  # the same ops in the same order on the same weights


def test_dists_network_swaps_the_max_pools_for_l2_pools_and_shares_the_weights(
    states: dict[str, dict[str, torch.Tensor]],
) -> None:
    features = build_vgg16_features()
    features.load_state_dict(states["vgg"])
    network = dists_vgg16(features)
    pools = [i for i, layer in enumerate(network.layers) if isinstance(layer, L2Pooling)]
    assert pools == [4, 9, 16, 23]
    assert not any(isinstance(layer, nn.MaxPool2d) for layer in network.layers)
    assert network.layers[28].weight is features[28].weight  # one copy for lpips_vgg and dists
    x = torch.rand(1, 3, 40, 40)
    with torch.no_grad():
        taps = network(x)
    assert [t.shape[1] for t in taps] == list(DISTS_CHANNELS)
    assert [t.shape[-1] for t in taps] == [40, 40, 20, 10, 5, 3]


@pytest.mark.parametrize("channels", [64, 512])
def test_l2_pooling_is_the_packages(channels: int) -> None:
    theirs = L2pooling(channels=channels)
    ours = L2Pooling(channels)
    assert torch.equal(ours.filter, theirs.filter)
    x = torch.rand(2, channels, 13, 8)
    assert torch.equal(ours(x), theirs(x))


def test_dists_taps_are_the_packages(states: dict[str, dict[str, torch.Tensor]]) -> None:
    reference = reference_dists(states["vgg"])
    features = build_vgg16_features()
    features.load_state_dict(states["vgg"])
    x = torch.rand(2, 3, 45, 37, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        theirs = reference.forward_once(x)
        ours = dists_vgg16(features)(x)
    for a, b in zip(ours, theirs, strict=True):
        assert torch.equal(a, b)


@pytest.mark.parametrize("net", ["alex", "vgg"])
def test_the_input_is_not_modified(net: str, states: dict[str, dict[str, torch.Tensor]]) -> None:
    """torchvision's ReLUs are in place: no tap and no input may be overwritten by a later
    layer."""
    x = torch.rand(1, 3, 64, 64)
    before = x.clone()
    with torch.no_grad():
        taps = built(net, states[net])(x)
        again = built(net, states[net])(x)
    assert torch.equal(x, before)
    for a, b in zip(taps, again, strict=True):
        assert torch.equal(a, b)


# -- the smallest side -------------------------------------------------------------------------


def networks() -> list[tuple[str, nn.Module, int]]:
    out = []
    for backbone in (registry.ALEXNET, registry.VGG16):
        features = backbone.build_features()
        for network in backbone.networks:
            out.append((network.name, network.build(features), network.min_side))
    return out


@pytest.mark.parametrize(("name", "network", "side"), networks(), ids=lambda v: str(v)[:16])
def test_the_smallest_side_runs_and_one_less_does_not(
    name: str, network: nn.Module, side: int
) -> None:
    with torch.no_grad():
        network(torch.rand(1, 3, side, side))
        network(torch.rand(1, 3, side, 3 * side + 5))  # each side on its own
        if side > 1:
            with pytest.raises(RuntimeError):
                network(torch.rand(1, 3, side - 1, 64))
            with pytest.raises(RuntimeError):
                network(torch.rand(1, 3, 64, side - 1))


@pytest.mark.parametrize(("net", "side"), [("alex", 31), ("vgg", 16)])
def test_the_lpips_package_has_the_same_smallest_side(net: str, side: int) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import lpips

        model = lpips.LPIPS(pnet_rand=True, net=net, verbose=False)
    with torch.no_grad():
        model(torch.rand(1, 3, side, side), torch.rand(1, 3, side, side))
        with pytest.raises(RuntimeError):
            model(torch.rand(1, 3, side - 1, side - 1), torch.rand(1, 3, side - 1, side - 1))


def test_taps_must_end_at_the_last_layer() -> None:
    with pytest.raises(ValueError, match="taps must be increasing"):
        TapNetwork(
            build_alexnet_features(), (1, 4), gain=1, offset=0, shift=(0, 0, 0), scale=(1, 1, 1)
        )
    with pytest.raises(ValueError, match="expected AlexNet"):
        lpips_alexnet(build_alexnet_features()[:5])
