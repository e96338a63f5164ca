"""Regions of interest within a batch: which pairs have a mask, their masks on the device."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from app.scoring.device import index_on, to_device
from app.scoring.types import PairRequest

Part = tuple[list[int], torch.Tensor | None]  # pair rows, and their masks (None: whole images)


class Regions:
    """The masks of a batch's pairs, moved to the device once."""

    def __init__(self, pairs: Sequence[PairRequest], device: torch.device) -> None:
        masked = [row for row, pair in enumerate(pairs) if pair.mask is not None]
        self._position = {row: i for i, row in enumerate(masked)}
        self._masks: torch.Tensor | None = None
        if masked:
            stacked = torch.stack([pairs[row].mask for row in masked])  # type: ignore[misc]
            self._masks = to_device(stacked, device)

    def split(self, rows: Sequence[int]) -> list[Part]:
        """``rows`` in two parts, each scored its own way: the pairs without a mask, then the
        pairs with one and their masks ``(n, 1, H, W)``."""
        plain = [row for row in rows if row not in self._position]
        masked = [row for row in rows if row in self._position]
        parts: list[Part] = []
        if plain:
            parts.append((plain, None))
        if masked and self._masks is not None:
            index = [self._position[row] for row in masked]
            parts.append((masked, self._masks[index_on(index, self._masks.device)]))
        return parts
