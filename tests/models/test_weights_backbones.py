"""Every backbone through one loading path: files by path (full and features-only), the hub cache
with pinned digests, absent weights as ``Unavailable``, random mode, the heads' checks."""

from __future__ import annotations

import dataclasses
import hashlib
from pathlib import Path

import pytest
import torch
from torchvision.models import alexnet, vgg16

from app.errors import WeightsError
from app.models import registry
from app.models.alexnet import ALEXNET_CHANNELS
from app.models.dists import DISTS_CHANNELS
from app.models.spec import BackboneSpec
from app.models.weights import (
    RANDOM,
    Loaded,
    Unavailable,
    fetch_imagenet,
    imagenet_cache_path,
    load_backbone,
    load_dists_head,
    load_lpips_head,
    random_state_dict,
    save_state_dict,
    weights_for,
)

BACKBONES = [registry.ALEXNET, registry.VGG16]
FULL = {"alexnet": alexnet, "vgg16": vgg16}


def loaded(result: Loaded | Unavailable) -> Loaded:
    assert isinstance(result, Loaded), result
    return result


def unavailable(result: Loaded | Unavailable) -> Unavailable:
    assert isinstance(result, Unavailable), result
    return result


def pinned_to(spec: BackboneSpec, path: Path) -> BackboneSpec:
    """``spec`` with the digest of ``path`` pinned (a stand-in for the official file)."""
    return dataclasses.replace(spec, sha256=hashlib.sha256(path.read_bytes()).hexdigest())


@pytest.fixture
def hub(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    return tmp_path / "hub" / "checkpoints"


def no_download(*args: object, **kwargs: object) -> None:
    raise AssertionError("must not download")


@pytest.mark.parametrize("spec", BACKBONES, ids=lambda s: s.name)
def test_features_only_file_loads_by_path(spec: BackboneSpec, tmp_path: Path) -> None:
    state = random_state_dict(3, spec)
    path = tmp_path / "features.pth"
    digest = save_state_dict(state, path)
    result = loaded(load_backbone(spec, str(path), expected_sha256=digest.upper()))
    assert result.info.source == "file" and result.info.sha256 == digest
    for key, value in state.items():
        assert torch.equal(result.features.state_dict()[key], value)


@pytest.mark.parametrize("spec", BACKBONES, ids=lambda s: s.name)
def test_full_torchvision_state_dict_loads_and_the_classifier_is_ignored(
    spec: BackboneSpec, tmp_path: Path
) -> None:
    torch.manual_seed(7)
    full = FULL[spec.name](weights=None).state_dict()
    path = tmp_path / "full.pth"
    torch.save(full, path)
    features = loaded(load_backbone(spec, str(path))).features
    for key, value in features.state_dict().items():
        assert torch.equal(value, full[f"features.{key}"])
    assert not any("classifier" in name for name, _ in features.named_parameters())


def test_another_networks_file_is_refused(tmp_path: Path) -> None:
    vgg19_file = tmp_path / "vgg19.pth"
    save_state_dict(random_state_dict(0, registry.VGG19), vgg19_file)
    with pytest.raises(WeightsError, match=r"unexpected key '16.weight': not a VGG16"):
        load_backbone(registry.VGG16, str(vgg19_file))
    vgg16_file = tmp_path / "vgg16.pth"
    save_state_dict(random_state_dict(0, registry.VGG16), vgg16_file)
    with pytest.raises(WeightsError, match=r"shape mismatch for '0.weight'.*AlexNet needs"):
        load_backbone(registry.ALEXNET, str(vgg16_file))


def test_a_pinned_sha256_is_verified(tmp_path: Path) -> None:
    path = tmp_path / "alexnet.pth"
    save_state_dict(random_state_dict(0, registry.ALEXNET), path)
    with pytest.raises(WeightsError, match="SIMSCORE_ALEXNET_WEIGHTS_SHA256 is 000"):
        load_backbone(registry.ALEXNET, str(path), expected_sha256="0" * 64)


@pytest.mark.parametrize("spec", BACKBONES, ids=lambda s: s.name)
def test_a_missing_file_is_unavailable_naming_setting_and_fetch(
    spec: BackboneSpec, tmp_path: Path
) -> None:
    result = unavailable(load_backbone(spec, str(tmp_path / "nope.pth")))
    assert (result.backbone, result.title, result.setting) == (spec.name, spec.title, spec.setting)
    assert f"{spec.setting}='{tmp_path / 'nope.pth'}': no such file" in result.because
    assert f"`simscore fetch-weights --backbone {spec.name}`" in result.message
    assert result.message.startswith(f"the {spec.title} weights are unavailable, because ")


def test_imagenet_not_cached_is_unavailable_without_a_download(
    hub: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(torch.hub, "download_url_to_file", no_download)
    result = unavailable(load_backbone(registry.ALEXNET, "imagenet"))
    assert "SIMSCORE_ALEXNET_WEIGHTS=imagenet" in result.because
    assert str(hub / "alexnet-owt-7be5be79.pth") in result.because


def test_imagenet_download_failing_is_unavailable(
    hub: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def offline(*args: object, **kwargs: object) -> None:
        raise OSError("network is unreachable")

    monkeypatch.setattr(torch.hub, "download_url_to_file", offline)
    result = unavailable(load_backbone(registry.VGG16, "imagenet", download=True))
    assert "could not be downloaded (OSError: network is unreachable)" in result.because


def test_the_hub_cache_is_checked_against_the_pinned_digest(
    hub: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(torch.hub, "download_url_to_file", no_download)
    cached = imagenet_cache_path(registry.ALEXNET)
    assert cached == hub / "alexnet-owt-7be5be79.pth"
    save_state_dict(random_state_dict(1, registry.ALEXNET), cached)
    with pytest.raises(WeightsError, match=r"official AlexNet file has 7be5be79.*fetch-weights"):
        load_backbone(registry.ALEXNET, "imagenet")  # a random file is not the official one
    result = loaded(load_backbone(pinned_to(registry.ALEXNET, cached), "imagenet"))
    assert result.info.source == "imagenet" and result.info.path == str(cached)


def test_fetch_downloads_with_the_full_digest_and_checks_it(
    hub: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[tuple[str, str | None]] = []

    def fake_download(url: str, dst: str, hash_prefix: str | None = None, **_: object) -> None:
        calls.append((url, hash_prefix))
        torch.manual_seed(2)
        torch.save(vgg16(weights=None).state_dict(), dst)

    monkeypatch.setattr(torch.hub, "download_url_to_file", fake_download)
    with pytest.raises(WeightsError, match="official VGG16 file"):
        fetch_imagenet(None, registry.VGG16)
    assert calls == [(registry.VGG16.url, registry.VGG16.sha256)]  # torch hub checks it too
    cached = imagenet_cache_path(registry.VGG16)
    out = tmp_path / "vgg16-features.pth"
    path, digest = fetch_imagenet(out, pinned_to(registry.VGG16, cached))
    assert path == out and digest == hashlib.sha256(out.read_bytes()).hexdigest()
    assert len(calls) == 1  # cached: not downloaded again
    assert set(torch.load(out, weights_only=True)) == set(random_state_dict(0, registry.VGG16))
    loaded(load_backbone(registry.VGG16, str(out)))


@pytest.mark.parametrize("spec", BACKBONES, ids=lambda s: s.name)
def test_random_weights_are_seeded_and_loud(
    spec: BackboneSpec, caplog: pytest.LogCaptureFixture
) -> None:
    a, b = loaded(load_backbone(spec, RANDOM, seed=3)), loaded(load_backbone(spec, RANDOM, seed=3))
    c = loaded(load_backbone(spec, RANDOM, seed=4))
    assert torch.equal(a.features.state_dict()["0.weight"], b.features.state_dict()["0.weight"])
    assert not torch.equal(a.features.state_dict()["0.weight"], c.features.state_dict()["0.weight"])
    assert a.info.source == "random" and a.info.sha256 == b.info.sha256 != c.info.sha256
    assert f"{spec.setting}=random: using a seeded RANDOM {spec.title}" in caplog.text


def test_which_weights_each_backbone_reads() -> None:
    assert weights_for(registry.VGG19, "/x.pth", "imagenet") == "imagenet"  # SIMSCORE_WEIGHTS
    assert weights_for(registry.ALEXNET, None, "imagenet") == "imagenet"
    assert weights_for(registry.ALEXNET, None, "/my/vgg19.pth") == "imagenet"
    assert weights_for(registry.ALEXNET, None, "random") == "random"  # dev mode covers all
    assert weights_for(registry.VGG16, "/v.pth", "random") == "/v.pth"  # its own setting wins


# -- the learned heads -------------------------------------------------------------------------


def test_heads_load_with_their_shapes() -> None:
    heads = load_lpips_head(registry.LPIPS_ALEX_HEAD, ALEXNET_CHANNELS)
    assert [tuple(h.shape) for h in heads] == [(1, c, 1, 1) for c in ALEXNET_CHANNELS]
    assert all(h.dtype == torch.float32 and bool((h >= 0).all()) for h in heads)
    alpha, beta = load_dists_head(registry.DISTS_HEAD, DISTS_CHANNELS)
    assert alpha.shape == beta.shape == (1, 1475, 1, 1)


def test_a_head_with_another_sha256_is_refused() -> None:
    wrong = dataclasses.replace(registry.LPIPS_VGG_HEAD, sha256="0" * 64)
    with pytest.raises(WeightsError, match=r"has sha256 a78928a0.*expected 000"):
        load_lpips_head(wrong, ALEXNET_CHANNELS)


def test_a_missing_head_is_refused() -> None:
    missing = dataclasses.replace(registry.DISTS_HEAD, filename="nope.pt")
    with pytest.raises(WeightsError, match=r"nope\.pt is missing"):
        load_dists_head(missing, DISTS_CHANNELS)


def test_a_head_for_other_taps_is_refused() -> None:
    with pytest.raises(WeightsError, match="lin1 is not a"):
        load_lpips_head(registry.LPIPS_VGG_HEAD, ALEXNET_CHANNELS)
    with pytest.raises(WeightsError, match="alpha and beta must be"):
        load_dists_head(registry.DISTS_HEAD, DISTS_CHANNELS[1:])
