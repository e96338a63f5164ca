"""The model registry: one entry per backbone, the networks a set of scores needs, the pinned
digests and the heads shipped in the package."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import tomllib

from app.models import registry
from app.models.registry import BACKBONES, backbone, min_side, network_of, networks_for
from app.models.spec import BackboneSpec, HeadSpec, NetworkSpec
from app.models.weights import HEADS_DIR, read_head

ROOT = Path(__file__).resolve().parents[2]


def names(pairs: tuple[tuple[BackboneSpec, NetworkSpec], ...]) -> list[str]:
    return [network.name for _, network in pairs]


def test_one_entry_per_backbone_with_its_setting_and_torchvision_weights() -> None:
    assert list(BACKBONES) == ["vgg19", "alexnet", "vgg16"]
    assert {b.name: b.setting for b in BACKBONES.values()} == {
        "vgg19": "SIMSCORE_WEIGHTS",
        "alexnet": "SIMSCORE_ALEXNET_WEIGHTS",
        "vgg16": "SIMSCORE_VGG16_WEIGHTS",
    }
    assert registry.ALEXNET.url.endswith("/alexnet-owt-7be5be79.pth")
    assert registry.VGG16.url.endswith("/vgg16-397923af.pth")
    assert registry.ALEXNET.fetch_command == "simscore fetch-weights --backbone alexnet"
    assert backbone("vgg16") is registry.VGG16
    with pytest.raises(KeyError, match="known: vgg19, alexnet, vgg16"):
        backbone("resnet")


@pytest.mark.parametrize("spec", [registry.ALEXNET, registry.VGG16])
def test_each_pinned_digest_extends_torchvisions_own_prefix(spec: BackboneSpec) -> None:
    """torchvision checks the 8 hex digits in the file name; the full digest must agree."""
    prefix = os.path.basename(spec.url).rsplit("-", 1)[1].removesuffix(".pth")
    assert spec.sha256 is not None and len(spec.sha256) == 64
    assert spec.sha256.startswith(prefix)


def test_scores_are_unique_and_name_their_network() -> None:
    scores = registry.networked_scores()
    assert scores == ("vgg", "style", "lpips", "lpips_vgg", "dists")
    assert network_of("lpips")[1].name == "lpips_alexnet"
    assert network_of("lpips_vgg")[0] is registry.VGG16
    assert network_of("dists")[1].name == "dists_vgg16"
    assert all(network_of(name)[2].direction == "lower" for name in scores)
    with pytest.raises(KeyError, match="no network computes 'ssim'"):
        network_of("ssim")


def test_a_request_runs_only_the_networks_its_scores_need() -> None:
    assert networks_for({"ssim", "mse", "psnr"}) == ()
    assert names(networks_for({"lpips"})) == ["lpips_alexnet"]
    assert names(networks_for({"vgg", "style", "lpips_vgg"})) == ["vgg19", "lpips_vgg16"]
    assert names(networks_for({"dists", "lpips_vgg", "ssim"})) == ["lpips_vgg16", "dists_vgg16"]
    assert names(networks_for(registry.networked_scores())) == [
        "vgg19",
        "lpips_alexnet",
        "lpips_vgg16",
        "dists_vgg16",
    ]


def test_smallest_sides() -> None:
    assert (min_side("vgg"), min_side("lpips"), min_side("lpips_vgg"), min_side("dists")) == (
        16,
        31,
        16,
        1,
    )


def heads() -> list[HeadSpec]:
    return [
        entry.head
        for spec in BACKBONES.values()
        for network in spec.networks
        for entry in network.scores
        if entry.head is not None
    ]


@pytest.mark.parametrize("head", heads(), ids=lambda h: h.filename)
def test_every_head_ships_verified_with_its_licence(head: HeadSpec) -> None:
    read_head(head)  # present, and its sha256 is the registry's
    name = "lpips" if head.filename.startswith("lpips") else "dists"
    licence = (HEADS_DIR / f"LICENSE.{name}").read_text()
    assert ("Redistribution and use" in licence) == (head.licence == "BSD-2-Clause")
    assert ("MIT License" in licence) == (head.licence == "MIT")
    docs = (ROOT / "docs" / "weights.md").read_text()
    assert head.sha256 in docs and head.filename in docs


def test_the_heads_are_package_data() -> None:
    """After ``pip install .`` the server finds its heads with no network."""
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    globs = config["tool"]["setuptools"]["package-data"]["app"]
    shipped = {p for g in globs for p in (ROOT / "app").glob(g) if p.is_file()}
    for head in heads():
        assert HEADS_DIR / head.filename in shipped
    assert HEADS_DIR / "LICENSE.lpips" in shipped and HEADS_DIR / "LICENSE.dists" in shipped
