"""The batcher's hooks for tracing: each item's opaque context reaches the ``BatchTracer`` with
its batch, every run of a batch is reported on the worker thread before it is launched and after
it is collected, a split after running out of memory reports its halves with the run they came
from, and a tracer that fails never fails a batch."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Sequence

import pytest

from app.batching import BatchTracer
from tests.batching.support import Launches, Recorder, far, make, overlapping


class Traced(BatchTracer[tuple[str, int]]):
    """Records what the batcher tells it; ``fail`` makes both hooks raise."""

    def __init__(self, handler: Recorder | Launches | None = None) -> None:
        self.events: list[tuple[str, object]] = []
        self.threads: set[str] = set()
        self.handler = handler
        self.fail = False
        self._runs = 0

    def batch_started(
        self, items: Sequence[tuple[str, int]], contexts: Sequence[object], *, split_of: object
    ) -> object:
        self.threads.add(threading.current_thread().name)
        if self.fail:
            raise RuntimeError("tracer broke")
        self._runs += 1
        run = f"run{self._runs}"
        computed = len(self.handler.batches) if isinstance(self.handler, Recorder) else None
        self.events.append(("start", (run, [v for _, v in items], list(contexts), split_of)))
        self.events.append(("computed before start", computed))
        return run

    def batch_ended(self, batch: object, error: BaseException | None) -> None:
        if self.fail:
            raise RuntimeError("tracer broke")
        self.events.append(("end", (batch, type(error).__name__ if error else None)))


def _starts(tracer: Traced) -> list[tuple[str, list[int], list[object], object]]:
    return [e[1] for e in tracer.events if e[0] == "start"]  # type: ignore[misc]


async def test_contexts_reach_the_tracer_with_their_items() -> None:
    handler = Recorder()
    tracer = Traced(handler)
    batcher = make(handler, max_batch_size=4, max_wait_s=0.2, tracer=tracer)
    answers = batcher.submit_many([("a", 1), ("a", 2)], deadline=far(), contexts=["c1", "c2"])
    await asyncio.gather(*answers)
    ((run, values, contexts, split_of),) = _starts(tracer)
    assert (values, contexts, split_of) == ([1, 2], ["c1", "c2"], None)
    assert ("computed before start", 0) in tracer.events, "reported before the batch runs"
    assert tracer.events[-1] == ("end", (run, None))
    assert tracer.threads == {"simscore-batcher"}
    batcher.close()


async def test_items_without_contexts_carry_none() -> None:
    handler = Recorder()
    tracer = Traced(handler)
    batcher = make(handler, max_batch_size=1, max_wait_s=0, tracer=tracer)
    await batcher.submit(("a", 7), deadline=far())
    assert _starts(tracer)[0][2] == [None]
    batcher.close()


async def test_contexts_must_match_the_items() -> None:
    batcher = make(Recorder())
    with pytest.raises(ValueError, match="1 contexts for 2 items"):
        batcher.submit_many([("a", 1), ("a", 2)], deadline=far(), contexts=["only one"])
    batcher.close()


async def test_a_split_after_out_of_memory_reports_its_halves_under_the_failed_run() -> None:
    handler = Recorder()
    handler.oom_above = 2
    tracer = Traced(handler)
    batcher = make(handler, max_batch_size=4, max_wait_s=0.2, tracer=tracer)
    items = [("a", i) for i in range(4)]
    await asyncio.gather(*batcher.submit_many(items, deadline=far(), contexts=list("wxyz")))
    starts = _starts(tracer)
    assert [(values, contexts, split_of) for _, values, contexts, split_of in starts] == [
        ([0, 1, 2, 3], list("wxyz"), None),
        ([0, 1], ["w", "x"], "run1"),
        ([2, 3], ["y", "z"], "run1"),
    ]
    ends = [e[1] for e in tracer.events if e[0] == "end"]
    assert ends == [("run1", "MemoryError"), ("run2", None), ("run3", None)]
    batcher.close()


async def test_a_failed_batch_is_reported_with_its_error() -> None:
    handler = Recorder()
    handler.fail_on = {5}
    tracer = Traced(handler)
    batcher = make(handler, max_batch_size=1, max_wait_s=0, tracer=tracer)
    with pytest.raises(RuntimeError, match="boom"):
        await batcher.submit(("a", 5), deadline=far())
    assert tracer.events[-1] == ("end", ("run1", "RuntimeError"))
    batcher.close()


async def test_with_a_launcher_each_run_ends_when_it_is_collected() -> None:
    launches = Launches()
    tracer = Traced(launches)
    batcher = overlapping(launches, tracer=tracer)
    await asyncio.gather(*batcher.submit_many([("a", i) for i in range(8)], deadline=far()))
    kinds = [kind for kind, _ in tracer.events if kind in ("start", "end")]
    assert kinds.count("start") == kinds.count("end") == 2
    assert kinds[0] == "start" and kinds[-1] == "end"
    batcher.close()


async def test_a_failing_tracer_never_fails_a_batch(caplog: pytest.LogCaptureFixture) -> None:
    handler = Recorder()
    tracer = Traced(handler)
    tracer.fail = True
    batcher = make(handler, max_batch_size=2, max_wait_s=0.05, tracer=tracer)
    outs = await asyncio.gather(*batcher.submit_many([("a", 1), ("a", 2)], deadline=far()))
    assert [o.value for o in outs] == [10, 20]
    assert "batch tracer failed at a batch's start" in caplog.text
    assert batcher.alive
    batcher.close()
