"""Weights: a seeded file loaded by path (full and features-only), refusals, the imagenet path."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
import torch
from torchvision.models import vgg19

from app.errors import WeightsError
from app.models import weights
from app.models.weights import (
    features_only,
    imagenet_cache_path,
    load_features,
    random_state_dict,
    save_state_dict,
)


def test_features_only_file_loads_by_path(weights_file: Path) -> None:
    features, info = load_features(str(weights_file))
    expected = torch.load(weights_file, weights_only=True)
    assert info.source == "file"
    assert info.sha256 == hashlib.sha256(weights_file.read_bytes()).hexdigest()
    assert info.short_sha256 == info.sha256[:12]
    state = features.state_dict()
    assert torch.equal(state["0.weight"], expected["0.weight"])
    assert torch.equal(state["28.bias"], expected["28.bias"])
    assert len(features) == 30  # up to relu5_1, nothing after


def test_full_torchvision_state_dict_loads_and_classifier_is_ignored(tmp_path: Path) -> None:
    torch.manual_seed(7)
    full = vgg19(weights=None).state_dict()
    path = tmp_path / "full.pth"
    torch.save(full, path)
    features, _ = load_features(str(path))
    assert torch.equal(features.state_dict()["2.weight"], full["features.2.weight"])
    assert not any(name.startswith("classifier") for name, _ in features.named_parameters())


def test_shape_mismatch_names_the_key(tmp_path: Path) -> None:
    state = random_state_dict(0)
    state["5.weight"] = torch.zeros(128, 64, 5, 5)
    path = tmp_path / "bad.pth"
    save_state_dict(state, path)
    with pytest.raises(WeightsError, match=r"shape mismatch for '5.weight'"):
        load_features(str(path))


def test_missing_layers_are_refused(tmp_path: Path) -> None:
    state = random_state_dict(0)
    del state["28.weight"]
    path = tmp_path / "partial.pth"
    save_state_dict(state, path)
    with pytest.raises(WeightsError, match=r"lacks 28\.weight"):
        load_features(str(path))


def test_batch_norm_vgg_is_refused() -> None:
    from torchvision.models import vgg19_bn

    with pytest.raises(WeightsError):
        features_only(vgg19_bn(weights=None).state_dict())


def test_corrupt_file_gives_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "corrupt.pth"
    path.write_bytes(b"this is not a torch file")
    with pytest.raises(WeightsError, match="cannot read weights file"):
        load_features(str(path))


def test_missing_file_names_the_setting(tmp_path: Path) -> None:
    with pytest.raises(WeightsError, match=r"SIMSCORE_WEIGHTS=.*no such file"):
        load_features(str(tmp_path / "nope.pth"))


def test_sha256_is_verified(weights_file: Path) -> None:
    with pytest.raises(WeightsError, match="sha256 mismatch"):
        load_features(str(weights_file), expected_sha256="0" * 64)
    digest = hashlib.sha256(weights_file.read_bytes()).hexdigest()
    load_features(str(weights_file), expected_sha256=digest)


def test_random_weights_are_seeded_and_loud(caplog: pytest.LogCaptureFixture) -> None:
    a, info_a = load_features("random", seed=3)
    b, info_b = load_features("random", seed=3)
    c, info_c = load_features("random", seed=4)
    first = [m.state_dict()["0.weight"] for m in (a, b, c)]
    assert torch.equal(first[0], first[1])
    assert not torch.equal(first[0], first[2])
    assert info_a.source == "random"
    assert info_a.sha256 == info_b.sha256 != info_c.sha256
    assert "RANDOM VGG19" in caplog.text


def test_imagenet_uses_the_hub_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    cached = imagenet_cache_path()
    assert cached == tmp_path / "hub" / "checkpoints" / "vgg19-dcbb9e9d.pth"
    cached.parent.mkdir(parents=True)
    torch.manual_seed(1)
    torch.save(vgg19(weights=None).state_dict(), cached)

    def no_download(*args: object, **kwargs: object) -> None:
        raise AssertionError("must not download when the file is cached")

    monkeypatch.setattr(torch.hub, "download_url_to_file", no_download)
    _, info = load_features("imagenet")
    assert info.source == "imagenet"
    assert info.path == str(cached)


def test_imagenet_missing_and_offline_fails_with_guidance(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))

    def offline(*args: object, **kwargs: object) -> None:
        raise OSError("network is unreachable")

    monkeypatch.setattr(torch.hub, "download_url_to_file", offline)
    with pytest.raises(WeightsError) as raised:
        load_features("imagenet")
    message = str(raised.value)
    assert "SIMSCORE_WEIGHTS=imagenet" in message
    assert str(tmp_path / "hub" / "checkpoints") in message
    assert "simscore fetch-weights" in message


def test_fetch_writes_a_features_only_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))

    def fake_download(url: str, dst: str, **kwargs: object) -> None:
        torch.manual_seed(2)
        torch.save(vgg19(weights=None).state_dict(), dst)

    monkeypatch.setattr(torch.hub, "download_url_to_file", fake_download)
    out = tmp_path / "features.pth"
    path, digest = weights.fetch_imagenet(out)
    assert path == out
    assert digest == hashlib.sha256(out.read_bytes()).hexdigest()
    saved = torch.load(out, weights_only=True)
    assert set(saved) == {k for k in random_state_dict(0)}
    load_features(str(out))
