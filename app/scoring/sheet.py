"""A batch's scores as they are computed: device tensors per metric, read back in one transfer."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from app.scoring.types import PairRequest, PairScores
from app.vocabulary import MAP_SCORES, TAP_NAMES, ScoreName


@dataclass(frozen=True)
class _Entry:
    field: str  # a PairScores field: a score name, or "<score>_layers"
    metric: ScoreName
    rows: list[int]
    values: torch.Tensor  # (len(rows),) or (len(rows), taps)


class ScoreSheet:
    """What a batch's pairs asked for, and the values computed for them so far."""

    def __init__(self, pairs: Sequence[PairRequest]) -> None:
        self._pairs = pairs
        self._entries: list[_Entry] = []
        self._maps: dict[int, torch.Tensor] = {}

    def rows_wanting(self, names: Iterable[ScoreName]) -> list[int]:
        """The pairs that asked for any of ``names``."""
        wanted = set(names)
        return [row for row, pair in enumerate(self._pairs) if pair.scores & wanted]

    def rows_drawing(self, names: Iterable[ScoreName]) -> list[int]:
        """The pairs that asked for a map drawn by the network of one of ``names``."""
        wanted = set(names)
        return [
            row
            for row, pair in enumerate(self._pairs)
            if pair.map_kind is not None and MAP_SCORES[pair.map_kind] in wanted
        ]

    def put_map(self, row: int, values: torch.Tensor) -> None:
        """The ``(H, W)`` map pair ``row`` asked for."""
        self._maps[row] = values.float().clone()  # its own storage, not the whole batch's

    def put(
        self,
        name: ScoreName,
        rows: list[int],
        values: torch.Tensor,
        per_tap: torch.Tensor | None = None,
    ) -> None:
        """``values`` ``(len(rows),)`` of ``name`` for ``rows``, and optionally its unweighted
        per-tap values ``(len(rows), taps)``."""
        self._entries.append(_Entry(name, name, rows, values))
        if per_tap is not None:
            self._entries.append(_Entry(f"{name}_layers", name, rows, per_tap))

    def read_back(
        self,
        download: Callable[[torch.Tensor], Callable[[], torch.Tensor]],
        cached: Sequence[bool],
    ) -> Callable[[], list[PairScores]]:
        """Start reading every value back in one transfer (``download`` starts it and returns
        what waits for it); returns what waits and then builds one ``PairScores`` per pair, each
        with what it asked for (``cached[row]``: whether its reference features came from the
        reference cache). What it returns holds the host copy and the layout, no device tensor:
        a batch waiting to be collected keeps nothing of its forward pass alive."""
        blocks = [entry.values.double().reshape(-1) for entry in self._entries]
        arrived = download(torch.cat(blocks)) if blocks else None
        maps = {row: download(values) for row, values in self._maps.items()}
        layout = [
            (e.field, e.metric, e.rows, e.values[0].numel(), e.values.dim() == 1)
            for e in self._entries
        ]
        wanted = [pair.scores for pair in self._pairs]
        del blocks
        self._maps = {}

        def scores() -> list[PairScores]:
            numbers: list[float] = [] if arrived is None else arrived().tolist()
            fields: list[dict[str, Any]] = [{} for _ in wanted]
            offset = 0
            for name, metric, rows, width, scalar in layout:
                for row in rows:
                    chunk = numbers[offset : offset + width]
                    offset += width
                    if metric in wanted[row]:
                        value = chunk[0] if scalar else dict(zip(TAP_NAMES, chunk, strict=True))
                        fields[row][name] = value
            return [
                PairScores(
                    **values,
                    reference_cached=cached[row],
                    map=maps[row]() if row in maps else None,
                )
                for row, values in enumerate(fields)
            ]

        return scores
