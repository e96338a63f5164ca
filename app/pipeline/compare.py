"""From uploaded bytes to scored comparisons and maps: the stages of ``app.pipeline.stages``
composed. ``ComparePipeline`` knows what each stage takes and gives, none of their insides; the
HTTP routes and ``simscore compare`` both call it, so the two cannot drift. It knows nothing of
HTTP.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Hashable, Sequence

from app.budgets import Budget
from app.config import Settings
from app.errors import DeviceFailed
from app.imaging import PreparedImage
from app.pipeline.decode import Decoder
from app.pipeline.maps import map_png
from app.pipeline.observer import PipelineObserver
from app.pipeline.prepare import prepare_pairs
from app.pipeline.queue import ScoringQueue
from app.pipeline.stages import Decode, Queue
from app.pipeline.types import CompareOptions, Comparison
from app.scoring import ModelInfo, Scorer
from app.scoring.device import MemoryStats
from app.tracing import Tracing
from app.vocabulary import MapKind


class ComparePipeline:
    """decode -> prepare -> batch and score, for one model copy."""

    def __init__(
        self,
        settings: Settings,
        decoder: Decode,
        queue: Queue,
        model: ModelInfo,
        tracing: Tracing | None = None,
    ) -> None:
        self.settings = settings
        self.decoder = decoder
        self.queue = queue
        self.model = model
        self.tracing = tracing or Tracing()

    @classmethod
    def build(
        cls,
        settings: Settings,
        scorer: Scorer,
        model: ModelInfo,
        observer: PipelineObserver | None = None,
        on_device_failure: Callable[[DeviceFailed], None] | None = None,
        tracing: Tracing | None = None,
    ) -> ComparePipeline:
        """The pipeline with its real stages: a ``Decoder`` and a ``ScoringQueue``
        (``on_device_failure``: see ``ScoringQueue``)."""
        decoder = Decoder(settings, tracing)
        queue = ScoringQueue(settings, scorer, observer, on_device_failure, tracing)
        return cls(settings, decoder, queue, model, tracing)

    def start(self) -> None:
        self.queue.start()

    async def warm_up(self) -> None:
        await self.queue.warm_up()

    def close(self) -> None:
        self.queue.close()
        self.decoder.close()

    def pixel_budget(self) -> Budget:
        """A fresh ``SIMSCORE_MAX_REQUEST_PIXELS`` budget for one request."""
        return self.decoder.pixel_budget()

    def memory(self) -> MemoryStats:
        return self.queue.memory()

    async def compare(
        self,
        reference: bytes,
        candidate: bytes,
        options: CompareOptions,
        *,
        deadline: float,
        budget: Budget | None = None,
    ) -> Comparison:
        """Score one pair (within ``options.mask``, if given); raises a ``SimscoreError`` for
        anything the caller did wrong."""
        (result,) = await self.compare_many(
            reference, [candidate], options, deadline=deadline, budget=budget
        )
        if isinstance(result, BaseException):
            raise result
        return result

    async def compare_many(
        self,
        reference: bytes,
        candidates: Sequence[bytes],
        options: CompareOptions,
        *,
        deadline: float,
        budget: Budget | None = None,
    ) -> list[Comparison | BaseException]:
        """Score candidates against one reference (all within ``options.mask``, if given); each
        candidate fails alone (its item is the exception). The reference's or the mask's own
        failure, or a full queue, raises for the request."""
        budget = budget or self.pixel_budget()
        async with self.decoder.decode(reference, candidates, options, budget) as decoded:
            pairs = await self.decoder.run(budget, prepare_pairs, decoded, options.scores)
            good = [(i, p) for i, p in enumerate(pairs) if not isinstance(p, BaseException)]
            waits = self.queue.submit_many([p for _, p in good], deadline=deadline)
            outcomes = dict(
                zip(
                    (i for i, _ in good),
                    await asyncio.gather(*waits, return_exceptions=True),
                    strict=True,
                )
            )
        results: list[Comparison | BaseException] = []
        for i, item in enumerate(decoded.candidates):
            if isinstance(item, BaseException):
                results.append(item)  # it failed to decode: it has no pair
                continue
            outcome = outcomes[i]
            if isinstance(outcome, BaseException):
                results.append(outcome)
            else:
                results.append(Comparison.of(outcome, decoded, item))
        return results

    async def difference_map(
        self,
        reference: bytes,
        candidate: bytes,
        kind: MapKind,
        options: CompareOptions,
        *,
        budget: Budget | None = None,
    ) -> bytes:
        """The ``kind`` heat map PNG of a pair decoded and sized (and masked) as ``compare``
        would."""
        budget = budget or self.pixel_budget()
        async with self.decoder.decode(reference, [candidate], options, budget) as decoded:
            (item,) = decoded.candidates
            if isinstance(item, BaseException):
                raise item
            with self.tracing.span("map", _map_attributes(kind, item)):
                return await self.decoder.run(
                    budget, map_png, decoded.reference.tensor, item.tensor, kind, decoded.mask
                )

    async def render_map(
        self, comparison: Comparison, kind: MapKind, *, lane: Hashable | None = None
    ) -> bytes:
        """The heat map PNG of a scored comparison, drawn on the decode threads (in the request's
        ``lane``: its pixel budget)."""
        with self.tracing.span("map", _map_attributes(kind, comparison.candidate)):
            return await self.decoder.run(
                lane if lane is not None else object(),
                map_png,
                comparison.reference.tensor,
                comparison.candidate.tensor,
                kind,
                comparison.mask,
            )


def _map_attributes(kind: MapKind, image: PreparedImage) -> dict[str, str | int]:
    """A ``map`` span's attributes: the kind, and the size it is drawn at."""
    return {
        "simscore.map_kind": kind,
        "simscore.image.width": image.width,
        "simscore.image.height": image.height,
    }
