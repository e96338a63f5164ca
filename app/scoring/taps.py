"""A batch's taps through one network: the candidates of the pairs that need it and, in the same
forward pass, their references not known yet (not computed in this batch, not in the reference
cache); plus the row bookkeeping the scorer shares between its scores."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Protocol

import torch

from app.scoring.device import index_on
from app.scoring.references import BatchReferences, taps_part
from app.scoring.runner import ModelRunner


class TimingObserver(Protocol):
    """Where the scorer reports how long each score and each network took for a batch (the
    service wires Prometheus). On CUDA these are host-side times: what it took to queue the
    work, not the device's, unless the device was synchronised (see the README)."""

    def score_seconds(self, score: str, seconds: float) -> None: ...

    def network_seconds(self, network: str, seconds: float) -> None: ...


class Timings:
    """``with timings.score("ssim"):`` reports the block's seconds (nothing without observer)."""

    def __init__(self, observer: TimingObserver | None) -> None:
        self._observer = observer

    @contextmanager
    def score(self, name: str) -> Iterator[None]:
        started = time.perf_counter()
        yield
        if self._observer is not None:
            self._observer.score_seconds(name, time.perf_counter() - started)

    @contextmanager
    def network(self, name: str) -> Iterator[None]:
        started = time.perf_counter()
        yield
        if self._observer is not None:
            self._observer.network_seconds(name, time.perf_counter() - started)


def candidate_taps(
    runner: ModelRunner,
    images: torch.Tensor,
    refs: BatchReferences,
    rows: list[int],
    network: str,
    timings: Timings,
) -> list[torch.Tensor]:
    """The candidates' taps of ``network`` for ``rows``, from one forward pass that also fills
    in the taps of their references not known yet (``images``: the batch as uploaded, the
    references then the candidates)."""
    n = images.shape[0] // 2
    part = taps_part(network)
    missing = refs.missing(part, rows)
    ref_rows = refs.pixel_rows(missing)
    if ref_rows == list(range(n)) and rows == ref_rows:
        inputs = images  # every pair has its own, unknown reference: the batch as uploaded
    else:
        inputs = torch.cat([take(images[:n], ref_rows), take(images[n:], rows)])
    with timings.network(network):
        taps = runner.forward(inputs, network=network)
    refs.fill(part, missing, [t[: len(missing)] for t in taps])
    return [t[len(missing) :] for t in taps]


def take(batch: torch.Tensor, rows: list[int]) -> torch.Tensor:
    """``batch[rows]`` without a copy when ``rows`` is the whole batch in order (and without
    making the host wait for the device otherwise: ``index_on``)."""
    if rows == list(range(batch.shape[0])):
        return batch
    return batch[index_on(rows, batch.device)]  # indexing keeps channels-last; index_select not


def rows_of(tensors: list[torch.Tensor], rows: list[int], subset: list[int]) -> list[torch.Tensor]:
    """The ``subset`` of ``rows`` from tensors whose rows are ``rows``."""
    if subset == rows:
        return tensors
    position = [rows.index(row) for row in subset]
    return [take(t, position) for t in tensors]
