"""Backbone weights: the hub cache, a local file or a seeded random init, one path for all."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from app.errors import WeightsError
from app.models.registry import VGG19
from app.models.spec import BackboneSpec
from app.models.weights.files import (
    read_state_dict,
    save_state_dict,
    sha256_file,
    state_dict_sha256,
)

log = logging.getLogger(__name__)

IMAGENET = "imagenet"
RANDOM = "random"
FULL_PREFIX = "features."


@dataclass(frozen=True)
class WeightsInfo:
    """Where the loaded weights came from, for logs and every result's ``model`` field."""

    source: str  # "imagenet", "file", or "random"
    sha256: str  # full hex digest of the file (or of the random state_dict)
    path: str | None = None

    @property
    def short_sha256(self) -> str:
        return self.sha256[:12]


@dataclass(frozen=True)
class Loaded:
    """A backbone's ``features`` with its weights in place."""

    backbone: BackboneSpec
    features: nn.Sequential
    info: WeightsInfo


@dataclass(frozen=True)
class Unavailable:
    """A backbone whose weights are absent: why, and what to do about it."""

    backbone: str  # the registry's name ("alexnet")
    title: str  # as messages name it ("AlexNet")
    setting: str
    fetch_command: str
    because: str

    @property
    def message(self) -> str:
        return (
            f"the {self.title} weights are unavailable, because {self.because}. Run "
            f"`{self.fetch_command}` on a machine with internet (copy the file into the cache or "
            f"anywhere and set {self.setting} to its path), or set {self.setting}=random for "
            "development."
        )


def imagenet_cache_path(backbone: BackboneSpec = VGG19) -> Path:
    """Where torch hub keeps (or would keep) the backbone's ImageNet file; honours TORCH_HOME."""
    return Path(str(torch.hub.get_dir())) / "checkpoints" / os.path.basename(backbone.url)


def weights_for(backbone: BackboneSpec, own: str | None, shared: str) -> str:
    """The weights spec of ``backbone``: VGG19's is ``SIMSCORE_WEIGHTS`` (``shared``); another
    backbone's is its own setting when given, else ``random`` when ``shared`` is ``random``
    (development mode covers every backbone), else ``imagenet``."""
    if backbone.setting == VGG19.setting:
        return shared
    if own is not None:
        return own
    return RANDOM if shared == RANDOM else IMAGENET


def load_backbone(
    backbone: BackboneSpec,
    weights: str,
    *,
    seed: int = 0,
    expected_sha256: str | None = None,
    download: bool = False,
) -> Loaded | Unavailable:
    """Build ``backbone``'s features with weights from ``weights`` (see the module docstring).

    ``download``: when ``imagenet`` is not cached, try to download it (VGG19's start-up does)
    instead of answering ``Unavailable``. Raises ``WeightsError`` for a file that is wrong.
    """
    if weights == RANDOM:
        state = random_state_dict(seed, backbone)
        info = WeightsInfo(RANDOM, state_dict_sha256(state))
        log.warning(
            "%s=random: using a seeded RANDOM %s (seed %d). Scores are NOT perceptual; for "
            "development and tests only.",
            backbone.setting,
            backbone.title,
            seed,
        )
    else:
        path = _locate(backbone, weights, download)
        if isinstance(path, Unavailable):
            return path
        source = IMAGENET if weights == IMAGENET else "file"
        info = WeightsInfo(source, sha256_file(path), str(path))
        if source == IMAGENET:
            _check_pinned(backbone, path, info.sha256)
        if expected_sha256 and info.sha256 != expected_sha256.lower():
            raise WeightsError(
                f"weights sha256 mismatch: {backbone.setting}_SHA256 is {expected_sha256}, "
                f"the file {info.path} has {info.sha256}"
            )
        state = read_state_dict(path)
    features = backbone.build_features()
    expected = features.state_dict()
    features.load_state_dict(features_only(state, expected=expected, backbone=backbone))
    return Loaded(backbone, features, info)


def load_features(
    spec: str, *, seed: int = 0, expected_sha256: str | None = None
) -> tuple[nn.Sequential, WeightsInfo]:
    """VGG19 ``features[:30]`` from ``spec``, downloading ``imagenet`` when it is not cached;
    raises ``WeightsError`` (with ``Unavailable``'s message) when the weights are absent."""
    loaded = load_backbone(VGG19, spec, seed=seed, expected_sha256=expected_sha256, download=True)
    if isinstance(loaded, Unavailable):
        raise WeightsError(loaded.message)
    return loaded.features, loaded.info


def features_only(
    state: dict[str, torch.Tensor],
    *,
    expected: dict[str, torch.Tensor] | None = None,
    backbone: BackboneSpec = VGG19,
) -> dict[str, torch.Tensor]:
    """The built layers' entries of a full or features-only torchvision state_dict,
    shape-checked (the classifier and the layers after the last tap are dropped)."""
    if expected is None:
        expected = backbone.build_features().state_dict()
    last = max(int(name.split(".")[0]) for name in expected)
    title = backbone.title
    full = any(key.startswith(FULL_PREFIX) for key in state)
    picked: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        name = key.removeprefix(FULL_PREFIX) if full else key
        if full and not key.startswith(FULL_PREFIX):
            continue  # the classifier of a full network is not used
        layer = name.split(".", 1)[0]
        if not layer.isdigit():
            raise WeightsError(f"unexpected key {key!r}: not a {title} state_dict")
        if int(layer) > last:
            continue  # the layers after the last tap are never run
        if name not in expected:
            raise WeightsError(f"unexpected key {key!r}: not a {title} state_dict")
        if tuple(value.shape) != tuple(expected[name].shape):
            raise WeightsError(
                f"shape mismatch for {key!r}: file has {tuple(value.shape)}, {title} needs "
                f"{tuple(expected[name].shape)} (is this {title} without batch norm?)"
            )
        picked[name] = value.float()
    missing = sorted(set(expected) - set(picked), key=lambda k: int(k.split(".")[0]))
    if missing:
        raise WeightsError(f"the weights file lacks {', '.join(missing)}: not a {title} state_dict")
    return picked


def random_state_dict(seed: int, backbone: BackboneSpec = VGG19) -> dict[str, torch.Tensor]:
    """A seeded ``features`` state_dict, initialised as torchvision initialises VGG
    (kaiming normal, fan out, zero biases; AlexNet gets the same)."""
    generator = torch.Generator().manual_seed(seed)
    state: dict[str, torch.Tensor] = {}
    for name, tensor in backbone.build_features().state_dict().items():
        if name.endswith("weight"):
            fan_out = tensor.shape[0] * tensor.shape[2] * tensor.shape[3]
            std = (2.0 / fan_out) ** 0.5  # kaiming_normal_(mode="fan_out", nonlinearity="relu")
            state[name] = torch.randn(tensor.shape, generator=generator) * std
        else:
            state[name] = torch.zeros_like(tensor)
    return state


def fetch_imagenet(out: Path | None, backbone: BackboneSpec = VGG19) -> tuple[Path, str]:
    """Download the ImageNet weights into the hub cache (needs internet) and check them;
    optionally also write a features-only file to ``out``."""
    cached = _download(backbone)
    digest = sha256_file(cached)
    _check_pinned(backbone, cached, digest)
    if out is None:
        return cached, digest
    features = features_only(read_state_dict(cached), backbone=backbone)
    return out, save_state_dict(features, out)


def _locate(backbone: BackboneSpec, weights: str, download: bool) -> Path | Unavailable:
    """The file ``weights`` names, or why there is none."""

    def unavailable(because: str) -> Unavailable:
        return Unavailable(
            backbone.name, backbone.title, backbone.setting, backbone.fetch_command, because
        )

    if weights == IMAGENET:
        path = imagenet_cache_path(backbone)
        if path.is_file():
            return path
        where = f"{backbone.setting}=imagenet, but the {backbone.title} ImageNet weights are not "
        if not download:
            return unavailable(f"{where}in the torch hub cache ({path})")
        try:
            return _download(backbone)
        except WeightsError as exc:
            return unavailable(str(exc))
    path = Path(weights).expanduser()
    if not path.is_file():
        return unavailable(f"{backbone.setting}={weights!r}: no such file")
    return path


def _download(backbone: BackboneSpec) -> Path:
    path = imagenet_cache_path(backbone)
    if path.is_file():
        return path
    try:
        log.info("downloading %s weights from %s to %s", backbone.title, backbone.url, path)
        path.parent.mkdir(parents=True, exist_ok=True)
        torch.hub.download_url_to_file(
            backbone.url, str(path), hash_prefix=backbone.sha256, progress=False
        )
    except Exception as exc:  # any network, disk or hash failure ends the same way
        raise WeightsError(
            f"{backbone.setting}=imagenet, but the {backbone.title} ImageNet weights are not in "
            f"the torch hub cache ({path}) and could not be downloaded ({type(exc).__name__}: "
            f"{exc})"
        ) from exc
    return path


def _check_pinned(backbone: BackboneSpec, path: Path, digest: str) -> None:
    if backbone.sha256 is not None and digest != backbone.sha256:
        raise WeightsError(
            f"{path} has sha256 {digest}, but torchvision's official {backbone.title} file has "
            f"{backbone.sha256}: delete it and run `{backbone.fetch_command}`"
        )
