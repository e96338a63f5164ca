"""The stages composed (``ComparePipeline``): each stage can be replaced by a stand-in, a request
cancelled between stages stops there, and what the decode stage holds is given back on every
path (scored, failed alone, refused, cancelled)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Hashable, Sequence
from typing import Any

import numpy as np
import pytest

from app.batching import Outcome
from app.config import Settings
from app.errors import InvalidRequest, NotAnImage, Overloaded
from app.pipeline import CompareOptions, ComparePipeline, Comparison
from app.pipeline.decode import Decoder
from app.scoring import ModelInfo, PairRequest, PairScores
from app.scoring.device import MemoryStats
from devtools.images import encode, photo, photo_png

INFO = ModelInfo("stand-in", "random", "0" * 12, "cpu", "fp32")
REF, CAND = photo_png("chelsea", 48), photo_png("coffee", 48)
FAR = time.monotonic() + 3600


class StandInQueue:
    """The batch and score stages replaced: each pair's 'score' is its mean absolute difference,
    answered at once, or after ``gate`` is set; ``refuse`` makes submissions fail as a full
    queue does."""

    def __init__(self) -> None:
        self.pairs: list[PairRequest] = []
        self.gate: asyncio.Event | None = None
        self.refuse = False
        self.alive = self.healthy = True

    def start(self) -> None: ...

    async def warm_up(self) -> None: ...

    def close(self) -> None: ...

    def memory(self) -> MemoryStats:
        return MemoryStats()

    def submit_many(
        self, pairs: Sequence[PairRequest], *, deadline: float
    ) -> list[Awaitable[Outcome[PairScores]]]:
        if self.refuse:
            raise Overloaded("the queue is full (stand-in)")
        self.pairs.extend(pairs)
        return [self._score(pair, len(pairs)) for pair in pairs]

    async def _score(self, pair: PairRequest, batch: int) -> Outcome[PairScores]:
        if self.gate is not None:
            await self.gate.wait()
        value = float((pair.reference - pair.candidate).abs().mean())
        return Outcome(PairScores(mse=value), 0.0, 0.0, batch)


@pytest.fixture
def parts(make_settings: Callable[..., Settings]) -> tuple[ComparePipeline, Decoder, StandInQueue]:
    settings = make_settings(decode_threads=2)
    decoder, queue = Decoder(settings), StandInQueue()
    return ComparePipeline(settings, decoder, queue, INFO), decoder, queue


def _held(decoder: Decoder) -> int:
    return decoder.memory.used


async def test_stages_compose_with_a_stand_in_queue(
    parts: tuple[ComparePipeline, Decoder, StandInQueue],
) -> None:
    pipeline, decoder, queue = parts
    results = await pipeline.compare_many(REF, [CAND, b"nope", REF], CompareOptions(), deadline=FAR)
    scored, failed, same = results
    assert isinstance(scored, Comparison) and scored.scores.mse is not None
    assert scored.scores.mse > 0 and scored.batch_size == 2
    assert isinstance(failed, NotAnImage)  # failed alone, never queued
    assert isinstance(same, Comparison) and same.scores.mse == 0
    assert len(queue.pairs) == 2
    assert queue.pairs[0].reference_key == queue.pairs[1].reference_key
    assert _held(decoder) == 0
    pipeline.close()


async def test_a_stand_in_decoder_feeds_the_real_prepare_stage(
    make_settings: Callable[..., Settings],
) -> None:
    """The decode stage replaced: whatever it hands on is prepared (mask composited) and
    queued as the real one's would be."""
    settings = make_settings()
    real = Decoder(settings)
    mask = np.zeros((48, 48), np.uint8)
    mask[:, :24] = 255
    options = CompareOptions(mask=encode(mask))

    class StandInDecoder:
        """Decodes with the real stage, and counts what it was asked."""

        def __init__(self) -> None:
            self.calls = 0

        def pixel_budget(self) -> Any:
            return real.pixel_budget()

        def decode(self, *args: Any) -> Any:
            self.calls += 1
            return real.decode(*args)

        def run(self, lane: Hashable, fn: Callable[..., Any], *args: object) -> Awaitable[Any]:
            return real.run(lane, fn, *args)

        def close(self) -> None:
            real.close()

    decoder, queue = StandInDecoder(), StandInQueue()
    pipeline = ComparePipeline(settings, decoder, queue, INFO)
    ref, cand = photo("chelsea", 48), photo("coffee", 48)
    result = await pipeline.compare(encode(ref), encode(cand), options, deadline=FAR)
    (pair,) = queue.pairs
    assert decoder.calls == 1
    assert pair.mask is not None and result.mask_coverage == pytest.approx(0.5, abs=0.05)
    outside = ~pair.mask[0]
    assert bool((pair.candidate[:, outside] == pair.reference[:, outside]).all())
    pipeline.close()


async def test_a_request_cancelled_while_decoding_never_reaches_the_queue(
    parts: tuple[ComparePipeline, Decoder, StandInQueue], monkeypatch: pytest.MonkeyPatch
) -> None:
    pipeline, decoder, queue = parts
    started, release = asyncio.Event(), asyncio.Event()
    loop = asyncio.get_running_loop()
    real = Decoder._candidate

    def slow(self: Decoder, *args: Any) -> Any:
        loop.call_soon_threadsafe(started.set)
        asyncio.run_coroutine_threadsafe(release.wait(), loop).result(10)
        return real(self, *args)

    monkeypatch.setattr(Decoder, "_candidate", slow)
    task = asyncio.ensure_future(pipeline.compare(REF, CAND, CompareOptions(), deadline=FAR))
    await asyncio.wait_for(started.wait(), 10)
    task.cancel()
    release.set()
    with pytest.raises(asyncio.CancelledError):
        await task
    await asyncio.sleep(0.05)
    assert queue.pairs == []
    assert _held(decoder) == 0
    pipeline.close()


async def test_a_request_cancelled_while_queued_gives_its_memory_back(
    parts: tuple[ComparePipeline, Decoder, StandInQueue],
) -> None:
    pipeline, decoder, queue = parts
    queue.gate = asyncio.Event()
    task = asyncio.ensure_future(pipeline.compare(REF, CAND, CompareOptions(), deadline=FAR))
    while not queue.pairs:
        await asyncio.sleep(0.01)
    assert _held(decoder) > 0  # the decoded images are held while the pair waits
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert _held(decoder) == 0
    pipeline.close()


@pytest.mark.parametrize("path", ["queue full", "bad mask", "bad reference", "map"])
async def test_budgets_are_given_back_on_every_path(
    parts: tuple[ComparePipeline, Decoder, StandInQueue], path: str
) -> None:
    pipeline, decoder, queue = parts
    budget = pipeline.pixel_budget()
    if path == "queue full":
        queue.refuse = True
        with pytest.raises(Overloaded):
            await pipeline.compare(REF, CAND, CompareOptions(), deadline=FAR, budget=budget)
    elif path == "bad mask":  # selects a pixel, but no SSIM window centre: refused in prepare
        mask = np.zeros((48, 48), np.uint8)
        mask[0, 0] = 255
        options = CompareOptions(mask=encode(mask))
        with pytest.raises(InvalidRequest, match="SSIM window centre"):
            await pipeline.compare(REF, CAND, options, deadline=FAR, budget=budget)
    elif path == "bad reference":
        with pytest.raises(NotAnImage):
            await pipeline.compare(b"", CAND, CompareOptions(), deadline=FAR, budget=budget)
    else:
        png = await pipeline.difference_map(REF, CAND, "abs", CompareOptions(), budget=budget)
        assert png.startswith(b"\x89PNG")
    assert _held(decoder) == 0
    assert queue.pairs == []
    pipeline.close()
