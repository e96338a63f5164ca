"""The learned heads shipped in the package (``app/models/heads``), sha256-checked at every load.

LPIPS v0.1's linear layers come from the ``lpips`` 0.1.4 wheel, DISTS's alpha and beta from the
``dists-pytorch`` 0.1 wheel; origin, licence and digests are in the registry and the docs.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch

from app.errors import WeightsError
from app.models.spec import HeadSpec
from app.models.weights.files import read_state_dict, sha256_file

HEADS_DIR = Path(__file__).resolve().parents[1] / "heads"


def load_lpips_head(head: HeadSpec, channels: Sequence[int]) -> list[torch.Tensor]:
    """LPIPS's linear layers ``lin{k}.model.1.weight``, ``(1, C_k, 1, 1)`` each, fp32."""
    state = read_head(head)
    weights = []
    for k, c in enumerate(channels):
        weight = state.get(f"lin{k}.model.1.weight")
        if weight is None or tuple(weight.shape) != (1, c, 1, 1):
            raise WeightsError(f"{head.filename}: lin{k} is not a (1, {c}, 1, 1) weight")
        weights.append(weight.float())
    return weights


def load_dists_head(head: HeadSpec, channels: Sequence[int]) -> tuple[torch.Tensor, torch.Tensor]:
    """DISTS's ``alpha`` and ``beta``, ``(1, sum(channels), 1, 1)`` each, fp32."""
    state = read_head(head)
    shape = (1, sum(channels), 1, 1)
    alpha, beta = state.get("alpha"), state.get("beta")
    if alpha is None or beta is None or {tuple(alpha.shape), tuple(beta.shape)} != {shape}:
        raise WeightsError(f"{head.filename}: alpha and beta must be {shape}")
    return alpha.float(), beta.float()


def read_head(head: HeadSpec) -> dict[str, torch.Tensor]:
    """The head's file as a state_dict, after checking its sha256."""
    path = HEADS_DIR / head.filename
    if not path.is_file():
        raise WeightsError(f"the learned head {path} is missing: it ships in the simscore package")
    digest = sha256_file(path)
    if digest != head.sha256:
        raise WeightsError(f"the learned head {path} has sha256 {digest}, expected {head.sha256}")
    return read_state_dict(path)
