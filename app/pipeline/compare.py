"""From uploaded bytes to scored comparisons and maps: the stages of ``app.pipeline.stages``
composed. ``ComparePipeline`` knows what each stage takes and gives, none of their insides; the
HTTP routes and ``simscore compare`` both call it, so the two cannot drift. It knows nothing of
HTTP.

A request for a score this server cannot compute (its backbone's weights are absent) is refused
before anything is decoded (``Catalog.check``). A map drawn by a score's network (``lpips``,
``lpips_vgg``) is computed with the pair's scores on the batch worker and comes back with them;
the PNG is drawn on the decode threads, like the pixel maps.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Hashable, Sequence

from app.budgets import Budget
from app.config import Settings
from app.errors import DeviceFailed
from app.imaging import PreparedImage
from app.pipeline.decode import Decoder
from app.pipeline.maps import map_png, scored_map_png
from app.pipeline.observer import PipelineObserver
from app.pipeline.prepare import prepare_pairs
from app.pipeline.queue import ScoringQueue
from app.pipeline.stages import Decode, Queue
from app.pipeline.types import CompareOptions, Comparison
from app.scoring import Catalog, ModelInfo, Scorer
from app.scoring.device import MemoryStats
from app.tracing import Tracing
from app.vocabulary import MAP_SCORES, MapKind


class ComparePipeline:
    """decode -> prepare -> batch and score, for one model copy (``catalog``: what it can
    score; default: every score)."""

    def __init__(
        self,
        settings: Settings,
        decoder: Decode,
        queue: Queue,
        model: ModelInfo,
        catalog: Catalog | None = None,
        tracing: Tracing | None = None,
    ) -> None:
        self.settings = settings
        self.decoder = decoder
        self.queue = queue
        self.model = model
        self.catalog = catalog if catalog is not None else Catalog()
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
        return cls(settings, decoder, queue, model, scorer.catalog, tracing)

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
        candidate fails alone (its item is the exception). A score this server cannot compute,
        the reference's or the mask's own failure, or a full queue, raises for the request."""
        self.catalog.check(options.needs)
        budget = budget or self.pixel_budget()
        async with self.decoder.decode(reference, candidates, options, budget) as decoded:
            pairs = await self.decoder.run(
                budget, prepare_pairs, decoded, options.scores, options.map_kind, options.ppd
            )
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
        deadline: float | None = None,
        budget: Budget | None = None,
    ) -> bytes:
        """The ``kind`` heat map PNG of a pair decoded and sized (and masked) as ``compare``
        would. A kind drawn by a score's network goes through the queue (the pair is scored for
        that score alone) within ``deadline`` (default: ``SIMSCORE_REQUEST_TIMEOUT_S`` from
        now)."""
        budget = budget or self.pixel_budget()
        drawn = MAP_SCORES.get(kind)
        if drawn is not None:
            scored = CompareOptions(
                frozenset({drawn}), options.size_policy, options.mask, kind, options.ppd
            )
            if deadline is None:
                deadline = time.monotonic() + self.settings.request_timeout_s
            comparison = await self.compare(
                reference, candidate, scored, deadline=deadline, budget=budget
            )
            return await self.render_map(comparison, kind, lane=budget)
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
        ``lane``: its pixel budget); a kind drawn by a score's network from the map that came
        back with the scores."""
        lane = lane if lane is not None else object()
        with self.tracing.span("map", _map_attributes(kind, comparison.candidate)):
            if kind in MAP_SCORES:
                values = comparison.scores.map
                if values is None:
                    raise ValueError(f"the {kind} map was not asked of the scorer")
                return await self.decoder.run(lane, scored_map_png, values, kind)
            return await self.decoder.run(
                lane,
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
