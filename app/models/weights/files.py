"""Weight files on disk: their sha256, reading a state_dict safely, writing one."""

from __future__ import annotations

import hashlib
import io
from pathlib import Path

import torch

from app.errors import WeightsError


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def save_state_dict(state: dict[str, torch.Tensor], path: Path) -> str:
    """Write ``state`` with ``torch.save`` and return the file's sha256."""
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(state, path)
    return sha256_file(path)


def read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """A ``{name: tensor}`` file (``weights_only``: no code runs), or ``WeightsError``."""
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


def state_dict_sha256(state: dict[str, torch.Tensor]) -> str:
    """The sha256 of ``state`` as ``torch.save`` writes it (names a random init)."""
    buffer = io.BytesIO()
    torch.save(state, buffer)
    return hashlib.sha256(buffer.getvalue()).hexdigest()
