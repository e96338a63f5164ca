"""The stages every comparison goes through, in order: the table of contents of simscore.

read     the HTTP body, streamed within the route's limits -> a ``Form``: uploads, text fields.
         ``app.api.multipart.read_form`` (``simscore compare`` reads files instead).
decode   the uploads' bytes -> a ``DecodedRequest``: the reference and its cache key, the mask
         and the candidates at the compared size (screened, decoded, oriented, sized).
         ``app.pipeline.decode.Decoder``: its threads, the pixel and memory budgets.
prepare  a ``DecodedRequest`` and the scores asked for -> one ``PairRequest`` per candidate
         (composited with the reference outside the mask). ``app.pipeline.prepare``.
batch    ``PairRequest`` s -> each pair's ``Outcome``: queued, batched with pairs of its shape,
         split in halves on out-of-memory. ``app.pipeline.queue.ScoringQueue`` over
         ``app.batching``.
score    a batch of pairs of one shape -> one ``PairScores`` each: the forward passes on the
         device, then each score. ``app.scoring.Scorer``, on the batch worker's thread, through
         ``app.pipeline.scoring.ScoringStage`` (memory gauges, sticky device errors).
respond  a ``Comparison`` -> JSON (``app.api.schemas.compare_response``) and maps as PNG
         (``app.pipeline.maps``).

``app.pipeline.compare.ComparePipeline`` composes decode, prepare, batch and score; the HTTP
routes read before it and respond after it, and so does the command line. The protocols below
are what the pipeline knows of its stages; tests put stand-ins in their place.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Hashable, Sequence
from contextlib import AbstractAsyncContextManager
from typing import Protocol, TypeVar

from app.batching import Outcome
from app.budgets import Budget
from app.pipeline.types import CompareOptions, DecodedRequest
from app.scoring import PairRequest, PairScores
from app.scoring.device import MemoryStats

R = TypeVar("R")


class Decode(Protocol):
    """The decode stage: bytes in, images at the compared size out, on its own threads and
    within its budgets (what it holds is given back when the ``decode`` block ends)."""

    def pixel_budget(self) -> Budget:
        """A fresh per-request pixel budget (``SIMSCORE_MAX_REQUEST_PIXELS``)."""
        ...

    def decode(
        self,
        reference: bytes,
        candidates: Sequence[bytes],
        options: CompareOptions,
        budget: Budget,
    ) -> AbstractAsyncContextManager[DecodedRequest]: ...

    def run(self, lane: Hashable, fn: Callable[..., R], *args: object) -> Awaitable[R]:
        """Pixel work (prepare, maps) on the decode threads, in the request's turn (``lane``):
        the event loop never does it."""
        ...

    def close(self) -> None: ...


class Queue(Protocol):
    """The batch and score stages: pairs queue for the batch worker, which scores them."""

    @property
    def alive(self) -> bool:
        """The batch worker runs."""
        ...

    @property
    def healthy(self) -> bool:
        """Its batches do not keep failing."""
        ...

    def start(self) -> None: ...

    async def warm_up(self) -> None: ...

    def submit_many(
        self, pairs: Sequence[PairRequest], *, deadline: float
    ) -> list[Awaitable[Outcome[PairScores]]]: ...

    def memory(self) -> MemoryStats: ...

    def close(self) -> None: ...
