"""Where VGG19 weights come from: the torch hub cache, a local file, or a seeded random init.

This is the only module that reads or writes weight files, and nothing here runs at import.

* ``imagenet``: torchvision's ``VGG19_Weights.IMAGENET1K_V1`` through the torch hub cache
  (``$TORCH_HOME/hub/checkpoints``). If the file is not cached and cannot be downloaded, start-up
  fails with a message that names the setting, the cache path and ``simscore fetch-weights``.
* a path: a torchvision VGG19 ``state_dict`` (full, with ``features.N.*`` keys, or
  features-only, with ``N.*`` keys). Every shape is checked; an optional sha256 is verified.
* ``random``: a seeded random VGG19 for development only. It is loud: a warning in the log and
  ``"weights": "random"`` in every result's ``model`` field.
"""

from __future__ import annotations

import hashlib
import io
import logging
import os
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn
from torchvision.models import VGG19_Weights

from app.errors import WeightsError
from app.models.vgg import LAST_INDEX, build_vgg19_features

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


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def imagenet_cache_path() -> Path:
    """Where torch hub keeps (or would keep) the ImageNet VGG19 file; honours ``TORCH_HOME``."""
    filename = os.path.basename(str(VGG19_Weights.IMAGENET1K_V1.url))
    return Path(str(torch.hub.get_dir())) / "checkpoints" / filename


def load_features(
    spec: str, *, seed: int = 0, expected_sha256: str | None = None
) -> tuple[nn.Sequential, WeightsInfo]:
    """Build VGG19 ``features[:30]`` with weights from ``spec`` (see the module docstring)."""
    features = build_vgg19_features()
    if spec == RANDOM:
        state = random_state_dict(seed)
        info = WeightsInfo(RANDOM, _state_dict_sha256(state))
        log.warning(
            "SIMSCORE_WEIGHTS=random: using a seeded RANDOM VGG19 (seed %d). Scores are NOT "
            "perceptual; for development and tests only.",
            seed,
        )
    elif spec == IMAGENET:
        path = _ensure_imagenet_file()
        state, info = _read_state_dict(path), WeightsInfo(IMAGENET, sha256_file(path), str(path))
    else:
        path = Path(spec).expanduser()
        if not path.is_file():
            raise WeightsError(
                f"SIMSCORE_WEIGHTS={spec!r}: no such file. Give 'imagenet', 'random' or the path "
                "of a VGG19 state_dict (see `simscore fetch-weights`)."
            )
        state, info = _read_state_dict(path), WeightsInfo("file", sha256_file(path), str(path))
    if expected_sha256 and info.sha256 != expected_sha256.lower():
        raise WeightsError(
            f"weights sha256 mismatch: SIMSCORE_WEIGHTS_SHA256 is {expected_sha256}, "
            f"the file {info.path} has {info.sha256}"
        )
    features.load_state_dict(features_only(state, expected=features.state_dict()))
    return features, info


def features_only(
    state: dict[str, torch.Tensor], *, expected: dict[str, torch.Tensor] | None = None
) -> dict[str, torch.Tensor]:
    """The ``features[:30]`` entries of a full or features-only VGG19 state_dict, shape-checked."""
    if expected is None:
        expected = build_vgg19_features().state_dict()
    full = any(key.startswith(FULL_PREFIX) for key in state)
    picked: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        name = key.removeprefix(FULL_PREFIX) if full else key
        if full and not key.startswith(FULL_PREFIX):
            continue  # the classifier of a full VGG19 is not used
        layer = name.split(".", 1)[0]
        if not layer.isdigit():
            raise WeightsError(f"unexpected key {key!r}: not a VGG19 state_dict")
        if int(layer) > LAST_INDEX:
            continue  # conv5_2 and later are never run
        if name not in expected:
            raise WeightsError(f"unexpected key {key!r}: not a VGG19 state_dict")
        if tuple(value.shape) != tuple(expected[name].shape):
            raise WeightsError(
                f"shape mismatch for {key!r}: file has {tuple(value.shape)}, VGG19 needs "
                f"{tuple(expected[name].shape)} (is this VGG19 without batch norm?)"
            )
        picked[name] = value.float()
    missing = sorted(set(expected) - set(picked), key=lambda k: int(k.split(".")[0]))
    if missing:
        raise WeightsError(f"the weights file lacks {', '.join(missing)}: not a VGG19 state_dict")
    return picked


def random_state_dict(seed: int) -> dict[str, torch.Tensor]:
    """A seeded VGG19 ``features[:30]`` state_dict, initialised as torchvision initialises VGG."""
    generator = torch.Generator().manual_seed(seed)
    state: dict[str, torch.Tensor] = {}
    for name, tensor in build_vgg19_features().state_dict().items():
        if name.endswith("weight"):
            fan_out = tensor.shape[0] * tensor.shape[2] * tensor.shape[3]
            std = (2.0 / fan_out) ** 0.5  # kaiming_normal_(mode="fan_out", nonlinearity="relu")
            state[name] = torch.randn(tensor.shape, generator=generator) * std
        else:
            state[name] = torch.zeros_like(tensor)
    return state


def save_state_dict(state: dict[str, torch.Tensor], path: Path) -> str:
    """Write ``state`` with ``torch.save`` and return the file's sha256."""
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(state, path)
    return sha256_file(path)


def fetch_imagenet(out: Path | None) -> tuple[Path, str]:
    """Download the ImageNet weights (needs internet); optionally write a features-only file."""
    cached = _ensure_imagenet_file()
    if out is None:
        return cached, sha256_file(cached)
    return out, save_state_dict(features_only(_read_state_dict(cached)), out)


def _ensure_imagenet_file() -> Path:
    path = imagenet_cache_path()
    if path.is_file():
        return path
    url = VGG19_Weights.IMAGENET1K_V1.url
    try:
        log.info("downloading VGG19 ImageNet weights from %s to %s", url, path)
        path.parent.mkdir(parents=True, exist_ok=True)
        torch.hub.download_url_to_file(url, str(path), hash_prefix=None, progress=False)
    except Exception as exc:  # any network or disk failure ends the same way
        raise WeightsError(
            f"SIMSCORE_WEIGHTS=imagenet, but the VGG19 ImageNet weights are not in the torch hub "
            f"cache ({path}) and could not be downloaded ({type(exc).__name__}: {exc}). Run "
            "`simscore fetch-weights` on a machine with internet and copy the file there, or "
            "set SIMSCORE_WEIGHTS to the path of a VGG19 state_dict."
        ) from exc
    return path


def _read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    try:
        loaded = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception as first:
        try:  # old (non-zip) serialisation cannot be memory-mapped
            loaded = torch.load(path, map_location="cpu", weights_only=True)
        except Exception:
            raise WeightsError(
                f"cannot read weights file {path}: {type(first).__name__}: {first}. Is it a "
                "torch state_dict saved with torch.save?"
            ) from first
    if isinstance(loaded, dict) and isinstance(loaded.get("state_dict"), dict):
        loaded = loaded["state_dict"]
    if not isinstance(loaded, dict) or not all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in loaded.items()
    ):
        raise WeightsError(f"weights file {path} does not hold a state_dict of tensors")
    return loaded


def _state_dict_sha256(state: dict[str, torch.Tensor]) -> str:
    buffer = io.BytesIO()
    torch.save(state, buffer)
    return hashlib.sha256(buffer.getvalue()).hexdigest()
