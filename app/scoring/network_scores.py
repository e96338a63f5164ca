"""The scores computed from a network other than VGG19 (lpips, lpips_vgg, dists) and the maps
those networks draw, for the pairs of a batch that asked for them.

Per network, one forward pass over the candidates that need it and their references not known
yet (``app.scoring.taps``); then each of its scores for the pairs that asked (a masked pair with
its mask reduced to each tap: ``app.scores.masks.tap_weights``), and the spatial map for a pair
whose ``map_kind`` that network draws. The learned heads are loaded once (``load_heads``) and
live on the device beside the network; the metric math is IEEE fp32 whatever precision the
network ran in (the metric functions take fp32 copies of the taps, and autocast and TF32 belong
to the forward pass alone).

A score here is one entry of ``NETWORK_SCORES``: its head's loader, its metric, its map. Adding
one is its registry entry (``app.models.registry``), its metric module and one entry here.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass

import torch

from app.models import registry
from app.models.alexnet import ALEXNET_CHANNELS
from app.models.dists import DISTS_CHANNELS
from app.models.spec import HeadSpec
from app.models.vgg16 import VGG16_CHANNELS
from app.models.weights import load_dists_head, load_lpips_head
from app.scores import dists, lpips, lpips_map, tap_weights
from app.scoring.references import BatchReferences, taps_part
from app.scoring.regions import Regions
from app.scoring.runner import ModelRunner
from app.scoring.sheet import ScoreSheet
from app.scoring.taps import Timings, candidate_taps, rows_of
from app.vocabulary import ScoreName

Head = tuple[torch.Tensor, ...]
Taps = Sequence[torch.Tensor]
Metric = Callable[[Taps, Taps, Head, Sequence[torch.Tensor] | None], torch.Tensor]
Drawing = Callable[[Taps, Taps, Head, tuple[int, int]], torch.Tensor]


def _lpips(fx: Taps, fy: Taps, head: Head, masks: Sequence[torch.Tensor] | None) -> torch.Tensor:
    return lpips(fx, fy, heads=head, masks=masks)[0]


def _lpips_map(fx: Taps, fy: Taps, head: Head, size: tuple[int, int]) -> torch.Tensor:
    return lpips_map(fx, fy, heads=head, size=size)


def _dists(fx: Taps, fy: Taps, head: Head, masks: Sequence[torch.Tensor] | None) -> torch.Tensor:
    return dists(fx, fy, alpha=head[0], beta=head[1], masks=masks)


def _lpips_head(channels: Sequence[int]) -> Callable[[HeadSpec], Head]:
    return lambda spec: tuple(load_lpips_head(spec, channels))


def _dists_head(spec: HeadSpec) -> Head:
    return load_dists_head(spec, DISTS_CHANNELS)


@dataclass(frozen=True)
class NetworkScore:
    """How one score is computed from its network's taps (and its map drawn, if it has one)."""

    name: ScoreName
    load_head: Callable[[HeadSpec], Head]
    metric: Metric
    spatial_map: Drawing | None = None  # the score's spatial map, if it has one

    @property
    def network(self) -> str:
        return registry.network_of(self.name)[1].name


NETWORK_SCORES: Mapping[ScoreName, NetworkScore] = {
    "lpips": NetworkScore("lpips", _lpips_head(ALEXNET_CHANNELS), _lpips, _lpips_map),
    "lpips_vgg": NetworkScore("lpips_vgg", _lpips_head(VGG16_CHANNELS), _lpips, _lpips_map),
    "dists": NetworkScore("dists", _dists_head, _dists),
}


def load_heads(networks: Iterable[str], device: torch.device) -> dict[ScoreName, Head]:
    """The learned heads of the scores ``networks`` compute, read once (sha256-checked) and
    placed on ``device``."""
    present = set(networks)
    heads: dict[ScoreName, Head] = {}
    for entry in NETWORK_SCORES.values():
        spec = registry.network_of(entry.name)[2].head
        if entry.network in present and spec is not None:
            heads[entry.name] = tuple(t.to(device) for t in entry.load_head(spec))
    return heads


class NetworkScores:
    """The network scores and maps of one batch (see the module docstring)."""

    def __init__(
        self, runner: ModelRunner, heads: Mapping[ScoreName, Head], timings: Timings
    ) -> None:
        self._runner = runner
        self._heads = heads
        self._timings = timings
        by_network: dict[str, list[NetworkScore]] = {}
        for name in heads:
            entry = NETWORK_SCORES[name]
            by_network.setdefault(entry.network, []).append(entry)
        self._by_network = by_network

    def score(
        self,
        sheet: ScoreSheet,
        refs: BatchReferences,
        images: torch.Tensor,
        regions: Regions,
    ) -> None:
        """Every network score and map ``sheet``'s pairs asked for, one forward pass per
        network that any of them needs (none for a network no pair needs)."""
        for network, entries in self._by_network.items():
            names = {entry.name for entry in entries}
            drawn = sheet.rows_drawing(names)
            rows = sorted(set(sheet.rows_wanting(names)) | set(drawn))
            if not rows:
                continue
            taps = candidate_taps(self._runner, images, refs, rows, network, self._timings)
            for entry in entries:
                for part, mask in regions.split(sheet.rows_wanting({entry.name})):
                    fx, fy = refs.gather(taps_part(network), part), rows_of(taps, rows, part)
                    cells = None if mask is None else tap_weights(mask, [t.shape for t in fy])
                    with self._timings.score(entry.name):
                        values = entry.metric(fx, fy, self._heads[entry.name], cells)
                    sheet.put(entry.name, part, values)
            self._draw(sheet, refs, images, network, taps, rows)

    def _draw(
        self,
        sheet: ScoreSheet,
        refs: BatchReferences,
        images: torch.Tensor,
        network: str,
        taps: list[torch.Tensor],
        rows: list[int],
    ) -> None:
        """The maps of the pairs whose ``map_kind`` this network draws, at the images' size."""
        size = (int(images.shape[2]), int(images.shape[3]))
        for entry in self._by_network[network]:
            if entry.spatial_map is None:
                continue  # dists has no spatial map
            map_rows = sheet.rows_drawing({entry.name})
            if not map_rows:
                continue
            fx, fy = refs.gather(taps_part(network), map_rows), rows_of(taps, rows, map_rows)
            maps = entry.spatial_map(fx, fy, self._heads[entry.name], size)
            for i, row in enumerate(map_rows):
                sheet.put_map(row, maps[i, 0])
