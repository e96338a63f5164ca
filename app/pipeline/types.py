"""What the pipeline takes and gives: the options of a request, a scored comparison, and how a
pair reaches the scorer."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import torch

from app.batching import BatchObserver, Outcome
from app.config import Settings
from app.errors import OutOfMemory
from app.imaging import PreparedImage
from app.metrics import composite, coverage
from app.scoring import PairRequest, PairScores
from app.scoring.device import MemoryStats
from app.vocabulary import ALL_SCORES, ScoreName, SizePolicy

CPU_MAX_WAIT_MS = 20.0  # measured: see docs/benchmarks.md#batching-defaults
CUDA_MAX_WAIT_MS = 2.0  # not measured (no GPU): a fraction of a GPU batch's compute time


class PipelineObserver(BatchObserver, Protocol):
    """The batcher's reports plus the device's memory after each batch."""

    def device_memory(self, stats: MemoryStats) -> None: ...


@dataclass(frozen=True)
class CompareOptions:
    """What a request asks of each of its pairs."""

    metrics: frozenset[ScoreName] = ALL_SCORES
    size_policy: SizePolicy | None = None  # None: SIMSCORE_DEFAULT_SIZE_POLICY
    mask: bytes | None = None  # the region of interest's upload (README: Scores)


@dataclass(frozen=True)
class Comparison:
    """One scored pair with what was compared and where the time went."""

    scores: PairScores
    reference: PreparedImage
    candidate: PreparedImage
    decode_ms: float
    queue_ms: float
    compute_ms: float
    batch_size: int
    mask: torch.Tensor | None = None  # (1, H, W) bool: the region of interest, if any

    @property
    def mask_coverage(self) -> float | None:
        return None if self.mask is None else coverage(self.mask)


def default_max_wait_ms(settings: Settings, device: torch.device) -> float:
    """``SIMSCORE_MAX_WAIT_MS`` if set, else the default for the device."""
    if settings.max_wait_ms is not None:
        return settings.max_wait_ms
    return CUDA_MAX_WAIT_MS if device.type == "cuda" else CPU_MAX_WAIT_MS


def scored_pair(
    ref: PreparedImage,
    cand: PreparedImage,
    options: CompareOptions,
    key: str,
    mask: torch.Tensor | None,
) -> PairRequest:
    """The pair the scorer sees: outside the mask, the candidate's pixels are the reference's
    (so nothing there can move a score, through VGG's receptive fields or SSIM's window)."""
    candidate = cand.tensor if mask is None else composite(ref.tensor, cand.tensor, mask)
    return PairRequest(ref.tensor, candidate, options.metrics, key, mask)


def pair_pixels(pair: PairRequest) -> int:
    """A pair's share of a forward pass's pixels: its reference's rows and its candidate's (a
    reference shared with other pairs, or cached, takes fewer: the budget errs on the safe
    side)."""
    _, height, width = pair.shape
    return 2 * height * width


def single_pair_out_of_memory(max_batch_pixels: int) -> OutOfMemory:
    return OutOfMemory(
        "out of memory scoring a single pair (pairs over "
        f"SIMSCORE_MAX_BATCH_PIXELS={max_batch_pixels} are already scored alone); "
        "send smaller images or lower SIMSCORE_MAX_SIDE"
    )


def comparison(
    outcome: Outcome[PairScores],
    ref: PreparedImage,
    cand: PreparedImage,
    decode_ms: float,
    mask: torch.Tensor | None,
) -> Comparison:
    return Comparison(
        scores=outcome.value,
        reference=ref,
        candidate=cand,
        decode_ms=decode_ms,
        queue_ms=outcome.queue_wait_s * 1000,
        compute_ms=outcome.compute_s * 1000,
        batch_size=outcome.batch_size,
        mask=mask,
    )
