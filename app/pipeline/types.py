"""What passes between the stages (``app.pipeline.stages``): a request's options, its decoded
images, a scored comparison."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from app.batching import Outcome
from app.config import Settings
from app.imaging import PreparedImage
from app.scores.flip_viewing import DEFAULT_PPD
from app.scores.masks import coverage
from app.scoring import PairScores
from app.vocabulary import DEFAULT_SCORES, MAP_SCORES, MapKind, ScoreName, SizePolicy

CPU_MAX_WAIT_MS = 20.0  # measured: see docs/benchmarks.md#batching-defaults
CUDA_MAX_WAIT_MS = 2.0  # not measured (no GPU): a fraction of a GPU batch's compute time


@dataclass(frozen=True)
class CompareOptions:
    """What a request asks of each of its pairs. ``map_kind``: a map drawn by a score's network
    (``MAP_SCORES``), computed with the pair's scores on the batch worker."""

    scores: frozenset[ScoreName] = DEFAULT_SCORES
    size_policy: SizePolicy | None = None  # None: SIMSCORE_DEFAULT_SIZE_POLICY
    mask: bytes | None = None  # the region of interest's upload (README: Scores)
    map_kind: MapKind | None = None
    ppd: float = DEFAULT_PPD  # FLIP's viewing conditions (app.scores.flip_viewing)

    @property
    def needs(self) -> frozenset[ScoreName]:
        """The scores this request needs computable: those asked for and the map's."""
        drawn = MAP_SCORES.get(self.map_kind) if self.map_kind is not None else None
        return self.scores if drawn is None else self.scores | {drawn}


@dataclass(frozen=True)
class DecodedRequest:
    """The decode stage's output: a request's images at the compared size."""

    reference: PreparedImage
    reference_key: str  # app.scoring.references.reference_key
    mask: torch.Tensor | None  # (1, H, W) bool at the compared size (app.scores.masks)
    candidates: list[PreparedImage | BaseException] = field(default_factory=list)
    decode_ms: float = 0.0


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

    @classmethod
    def of(
        cls, outcome: Outcome[PairScores], decoded: DecodedRequest, candidate: PreparedImage
    ) -> Comparison:
        """A pair's comparison from its outcome in the queue and its decoded images."""
        return cls(
            scores=outcome.value,
            reference=decoded.reference,
            candidate=candidate,
            decode_ms=decoded.decode_ms,
            queue_ms=outcome.queue_wait_s * 1000,
            compute_ms=outcome.compute_s * 1000,
            batch_size=outcome.batch_size,
            mask=decoded.mask,
        )


def default_max_wait_ms(settings: Settings, device: torch.device) -> float:
    """``SIMSCORE_MAX_WAIT_MS`` if set, else the default for the device."""
    if settings.max_wait_ms is not None:
        return settings.max_wait_ms
    return CUDA_MAX_WAIT_MS if device.type == "cuda" else CPU_MAX_WAIT_MS
