"""Running one batch (``app.batching.attempts``), through the batcher: cancelled and expired
items, failures kept to their batch, out of memory retried in halves once the failed attempt is
freed, and the run of failures that makes the batcher unhealthy."""

from __future__ import annotations

import asyncio
import time
import weakref
from collections.abc import Callable, Sequence

import pytest

from app.errors import DeadlineExceeded, OutOfMemory
from tests.batching.support import (
    Observed,
    Recorder,
    far,
    healthy,
    make,
    until,
)


async def test_cancelled_and_expired_items_are_dropped_before_compute() -> None:
    handler = Recorder()
    handler.gate.clear()
    batcher = make(handler, max_batch_size=1, max_wait_s=0)
    held = asyncio.ensure_future(batcher.submit(("a", 0), deadline=far()))
    await asyncio.sleep(0.05)
    cancelled = asyncio.ensure_future(batcher.submit(("a", 1), deadline=far()))
    expired = asyncio.ensure_future(batcher.submit(("a", 2), deadline=time.monotonic() + 0.01))
    kept = asyncio.ensure_future(batcher.submit(("a", 3), deadline=far()))
    await asyncio.sleep(0.05)
    cancelled.cancel()
    handler.gate.set()
    await held
    with pytest.raises(DeadlineExceeded):
        await expired
    assert (await kept).value == 30
    computed = [value for batch in handler.batches for _, value in batch]
    assert computed == [0, 3]
    batcher.close()


async def test_a_failing_batch_fails_alone_and_the_worker_survives() -> None:
    handler = Recorder()
    handler.fail_on = {1}
    batcher = make(handler, max_wait_s=0.05)
    bad = batcher.submit_many([("a", 1), ("a", 2)], deadline=far())
    good = batcher.submit_many([("b", 3)], deadline=far())
    results = await asyncio.gather(*bad, return_exceptions=True)
    assert all(isinstance(r, RuntimeError) for r in results)
    assert (await good[0]).value == 30
    assert batcher.alive
    assert (await batcher.submit(("a", 5), deadline=far())).value == 50
    batcher.close()


async def test_out_of_memory_splits_the_batch_down_to_singles() -> None:
    handler = Recorder()
    handler.oom_above = 2
    batcher = make(handler, max_batch_size=8)
    outs = await asyncio.gather(*batcher.submit_many([("a", i) for i in range(8)], deadline=far()))
    assert [o.value for o in outs] == [i * 10 for i in range(8)]
    assert [len(b) for b in handler.batches] == [8, 4, 2, 2, 4, 2, 2]
    handler.oom_above = 0
    with pytest.raises(OutOfMemory, match="single item"):
        await batcher.submit(("a", 9), deadline=far())
    assert batcher.alive
    batcher.close()


async def test_out_of_memory_is_retried_only_once_the_failed_batch_is_freed() -> None:
    """The exception's traceback holds the failed attempt's frames and so its tensors: they
    must be gone before memory is released and the halves retried."""

    class Activations:  # stands for the batch's device tensors
        def __init__(self) -> None:
            self.data = bytearray(1 << 20)

    alive: list[weakref.ref[Activations]] = []
    freed_before_retry: list[bool] = []

    def hungry(items: Sequence[tuple[str, int]]) -> list[int]:
        activations = Activations()
        alive.append(weakref.ref(activations))
        if len(items) > 1:
            raise MemoryError(f"out of memory at {len(items)} items ({len(activations.data)} B)")
        return [value for _, value in items]

    def release() -> None:  # what empty_cache() needs: nothing of the failed attempt referenced
        freed_before_retry.append(all(ref() is None for ref in alive))

    batcher = make(hungry, max_batch_size=4, on_exhausted=release)
    outs = await asyncio.gather(*batcher.submit_many([("a", i) for i in range(4)], deadline=far()))
    assert [o.value for o in outs] == [0, 1, 2, 3]
    assert freed_before_retry == [True, True, True]  # after the 4-batch and both 2-batches
    batcher.close()


async def test_consecutive_failures_make_it_unhealthy_until_a_success() -> None:
    handler = Recorder()
    handler.fail_on = {1, 2, 3}
    observer = Observed()
    batcher = make(handler, max_wait_s=0, unhealthy_after=3, observer=observer)
    for value in (1, 2):
        with pytest.raises(RuntimeError):
            await batcher.submit(("a", value), deadline=far())
    assert healthy(batcher)
    with pytest.raises(RuntimeError):
        await batcher.submit(("a", 3), deadline=far())
    assert not healthy(batcher)
    assert (await batcher.submit(("a", 4), deadline=far())).value == 40
    assert healthy(batcher)
    assert [e for e in observer.events if e[0] == "failed"] == [("failed", (1, False))] * 3
    assert ("done", 1) in observer.events
    batcher.close()


async def test_out_of_memory_does_not_count_against_health() -> None:
    handler = Recorder()
    handler.oom_above = 0
    batcher = make(handler, max_wait_s=0, unhealthy_after=1)
    for value in range(3):
        with pytest.raises(OutOfMemory):
            await batcher.submit(("a", value), deadline=far())
    assert batcher.healthy
    batcher.close()


async def test_a_launcher_raising_a_base_exception_fails_its_batch_only() -> None:
    class Abort(BaseException):
        pass

    def launch(items: Sequence[tuple[str, int]]) -> Callable[[], list[int]]:
        if any(value == 1 for _, value in items):
            raise Abort("not an Exception")
        return lambda: [value for _, value in items]

    batcher = make(Recorder(), launcher=launch, max_batch_size=1)
    with pytest.raises(Abort):
        await batcher.submit(("a", 1), deadline=far())
    assert batcher.alive
    assert (await batcher.submit(("a", 2), deadline=far())).value == 2
    await until(lambda: batcher.depth == 0)
    batcher.close()


async def test_out_of_memory_when_collecting_frees_the_batch_before_the_retry() -> None:
    class Activations:
        pass

    alive: list[weakref.ref[Activations]] = []
    freed_before_retry: list[bool] = []

    def launch(items: Sequence[tuple[str, int]]) -> Callable[[], list[int]]:
        activations = Activations()
        alive.append(weakref.ref(activations))

        def collect() -> list[int]:
            if len(items) > 1:
                raise MemoryError(f"out of memory reading {activations} back")
            return [value for _, value in items]

        return collect

    def release() -> None:
        freed_before_retry.append(all(ref() is None for ref in alive))

    batcher = make(
        Recorder(),
        launcher=launch,
        max_batch_size=2,
        on_exhausted=release,
    )
    outs = await asyncio.gather(*batcher.submit_many([("a", 1), ("a", 2)], deadline=far()))
    assert [o.value for o in outs] == [1, 2]
    assert freed_before_retry == [True]
    batcher.close()
