"""The dynamic batcher on its own, with a stand-in handler (no model)."""

from __future__ import annotations

import asyncio
import threading
import time
import weakref
from collections.abc import Callable, Sequence
from typing import Any

import pytest

from app.batching import Batcher
from app.errors import DeadlineExceeded, NotReady, OutOfMemory, Overloaded


class Recorder:
    """A handler that records its batches and can be held, fail, or run out of memory."""

    def __init__(self, delay_s: float = 0.0) -> None:
        self.batches: list[list[tuple[str, int]]] = []
        self.delay_s = delay_s
        self.gate = threading.Event()
        self.gate.set()
        self.fail_on: set[int] = set()
        self.oom_above = 10**9

    def __call__(self, items: Sequence[tuple[str, int]]) -> list[int]:
        self.gate.wait(10)
        self.batches.append(list(items))
        time.sleep(self.delay_s)
        if any(value in self.fail_on for _, value in items):
            raise RuntimeError("boom")
        if len(items) > self.oom_above:
            raise MemoryError("simulated out of memory")
        return [value * 10 for _, value in items]


class Observed:
    """A ``BatchObserver`` that records what it is told."""

    def __init__(self) -> None:
        self.events: list[tuple[str, object]] = []

    def queue_depth(self, items: int) -> None:
        self.events.append(("depth", items))

    def queue_wait(self, seconds: float) -> None:
        self.events.append(("wait", seconds))

    def batch_done(self, items: int, seconds: float) -> None:
        self.events.append(("done", items))

    def batch_failed(self, items: int, exc: BaseException, *, exhausted: bool) -> None:
        self.events.append(("failed", (items, exhausted)))


class Launches:
    """A launcher: records when each batch is started and collected; collecting can be held,
    starting or collecting can fail or run out of memory for given values."""

    def __init__(self) -> None:
        self.log: list[str] = []
        self.collecting = threading.Event()
        self.collecting.set()
        self.oom_at_start: set[int] = set()  # a batch of more than one holding these
        self.fail_at_collect: set[int] = set()
        self.threads: set[str] = set()
        self.collect_s = 0.0  # how long a batch takes on its "device"

    def __call__(self, items: Sequence[tuple[str, int]]) -> Callable[[], list[int]]:
        values = [value for _, value in items]
        self.threads.add(threading.current_thread().name)
        self.log.append(f"start {values}")
        if len(values) > 1 and self.oom_at_start & set(values):
            raise MemoryError(f"out of memory starting {values}")

        def collect() -> list[int]:
            self.collecting.wait(10)
            time.sleep(self.collect_s)
            self.log.append(f"collect {values}")
            if self.fail_at_collect & set(values):
                raise RuntimeError("device error")
            return [value * 10 for value in values]

        return collect


def make(
    handler: Callable[[Sequence[tuple[str, int]]], list[int]],
    *,
    launcher: Callable[[Sequence[tuple[str, int]]], Callable[[], Sequence[int]]] | None = None,
    max_batch_size: int = 4,
    max_wait_s: float = 0.05,
    queue_size: int = 64,
    on_exhausted: Callable[[], None] = lambda: None,
    unhealthy_after: int = 3,
    observer: Observed | None = None,
) -> Batcher[tuple[str, int], int]:
    batcher: Batcher[tuple[str, int], int] = Batcher(
        handler,
        group_key=lambda item: item[0],
        max_batch_size=max_batch_size,
        max_wait_s=max_wait_s,
        queue_size=queue_size,
        is_resource_exhausted=lambda exc: isinstance(exc, MemoryError),
        on_resource_exhausted=on_exhausted,
        exhausted_error=lambda: OutOfMemory("out of memory for a single item"),
        unhealthy_after=unhealthy_after,
        observer=observer,
        launcher=launcher,
    )
    batcher.start()
    return batcher


def healthy(batcher: Batcher[tuple[str, int], int]) -> bool:
    return batcher.healthy  # read afresh each time (mypy would narrow the property)


async def until(condition: Callable[[], bool], timeout_s: float = 10.0) -> None:
    """Wait for the worker thread to reach a state (instead of sleeping a guessed time)."""
    give_up = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < give_up, "the worker never got there"
        await asyncio.sleep(0.005)


def far() -> float:
    return time.monotonic() + 30


async def test_concurrent_items_of_one_key_share_a_batch() -> None:
    handler = Recorder()
    batcher = make(handler)
    outs = await asyncio.gather(*(batcher.submit(("a", i), deadline=far()) for i in range(4)))
    assert [o.value for o in outs] == [0, 10, 20, 30]
    assert [len(b) for b in handler.batches] == [4]
    assert all(o.batch_size == 4 for o in outs)
    batcher.close()


async def test_keys_are_never_mixed_and_the_oldest_goes_first() -> None:
    handler = Recorder()
    handler.gate.clear()
    batcher = make(handler, max_batch_size=8, max_wait_s=0)
    first = asyncio.ensure_future(batcher.submit(("a", 0), deadline=far()))
    await asyncio.sleep(0.05)  # the worker now holds batch [a0] at the gate
    waits = [
        asyncio.ensure_future(batcher.submit((key, i), deadline=far()))
        for i, key in enumerate(["b", "a", "b", "c", "a"], start=1)
    ]
    await asyncio.sleep(0.05)
    handler.gate.set()
    await asyncio.gather(first, *waits)
    keys = [{k for k, _ in batch} for batch in handler.batches]
    assert all(len(k) == 1 for k in keys)
    assert [next(iter(k)) for k in keys] == ["a", "b", "a", "c"]  # by age of each batch's oldest
    batcher.close()


async def test_full_queue_is_rejected_with_overloaded() -> None:
    handler = Recorder()
    handler.gate.clear()
    batcher = make(handler, max_batch_size=1, max_wait_s=0, queue_size=2)
    held = asyncio.ensure_future(batcher.submit(("a", 0), deadline=far()))
    await asyncio.sleep(0.05)
    queued = [asyncio.ensure_future(batcher.submit(("a", i), deadline=far())) for i in (1, 2)]
    await asyncio.sleep(0.01)
    with pytest.raises(Overloaded, match="queue is full"):
        await batcher.submit(("a", 3), deadline=far())
    with pytest.raises(Overloaded):
        batcher.submit_many([("a", 4), ("a", 5)], deadline=far())
    handler.gate.set()
    await asyncio.gather(held, *queued)
    batcher.close()


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


async def test_call_runs_on_the_worker_thread_between_batches() -> None:
    batcher = make(Recorder())
    name = await batcher.call(lambda: threading.current_thread().name)
    assert name == "simscore-batcher"
    with pytest.raises(ZeroDivisionError):
        await batcher.call(lambda: 1 // 0)
    assert (await batcher.submit(("a", 2), deadline=far())).value == 20
    batcher.close()
    with pytest.raises(NotReady):
        await batcher.call(lambda: None)


async def test_accepts_until_closed_then_refuses() -> None:
    """Admission is the service's business: the batcher takes whatever it is given until it is
    closed, so work admitted before a shutdown is never refused here."""
    handler = Recorder(delay_s=0.02)
    batcher = make(handler, max_batch_size=2, max_wait_s=0)
    accepted = batcher.submit_many([("a", i) for i in range(5)], deadline=far())
    assert [(await a).value for a in accepted] == [0, 10, 20, 30, 40]
    await until(lambda: batcher.depth == 0)  # the worker marks a batch done just after answering
    batcher.close()
    assert not batcher.alive
    with pytest.raises(NotReady):
        await batcher.submit(("a", 9), deadline=far())


async def test_close_fails_what_is_still_queued() -> None:
    handler = Recorder()
    handler.gate.clear()
    batcher = make(handler, max_batch_size=1, max_wait_s=0)
    held = asyncio.ensure_future(batcher.submit(("a", 0), deadline=far()))
    await asyncio.sleep(0.05)
    queued = asyncio.ensure_future(batcher.submit(("a", 1), deadline=far()))
    await asyncio.sleep(0.01)
    closer = threading.Thread(target=batcher.close)
    closer.start()
    with pytest.raises(NotReady):
        await queued
    handler.gate.set()
    await held
    closer.join()


# -- overlap: the next full batch starts before the current one is collected ------------------


def overlapping(launches: Launches, **kwargs: Any) -> Batcher[tuple[str, int], int]:
    def unused(items: Sequence[tuple[str, int]]) -> list[int]:
        raise AssertionError("with a launcher, the handler is not called")

    return make(unused, launcher=launches, max_batch_size=4, **kwargs)


async def test_a_full_next_batch_starts_before_the_current_one_is_collected() -> None:
    launches = Launches()
    launches.collect_s = 0.05
    batcher = overlapping(launches)
    began = time.monotonic()
    outs = await asyncio.gather(*batcher.submit_many([("a", i) for i in range(12)], deadline=far()))
    wall = time.monotonic() - began
    assert [o.value for o in outs] == [i * 10 for i in range(12)]
    assert all(o.batch_size == 4 for o in outs)
    # A batch started early counts its time from the end of the one before: batch times add up
    # to the busy time (a "busy" share from them stays at most 1), each about one collect.
    times = [outs[i].compute_s for i in (0, 4, 8)]
    assert sum(times) <= wall and all(t >= 0.05 for t in times)
    assert launches.log == [
        "start [0, 1, 2, 3]",
        "start [4, 5, 6, 7]",  # staged while the first is on the device
        "collect [0, 1, 2, 3]",
        "start [8, 9, 10, 11]",
        "collect [4, 5, 6, 7]",
        "collect [8, 9, 10, 11]",
    ]
    assert launches.threads == {"simscore-batcher"}
    await until(lambda: batcher.depth == 0)  # the worker marks a batch done just after answering
    batcher.close()


async def test_a_batch_that_is_not_full_forms_after_the_current_one_as_without_overlap() -> None:
    """Batches form as they would without overlap until the queue holds more than one: the
    items left over wait for the current batch, then for more items up to max_wait_s."""
    launches = Launches()
    launches.collecting.clear()
    batcher = overlapping(launches, max_wait_s=0.2)
    first = batcher.submit_many([("a", i) for i in range(6)], deadline=far())
    await asyncio.sleep(0.05)
    later = batcher.submit_many([("a", 6)], deadline=far())  # joins the two left over
    launches.collecting.set()
    await asyncio.gather(*first, *later)
    assert launches.log == [
        "start [0, 1, 2, 3]",
        "collect [0, 1, 2, 3]",
        "start [4, 5, 6]",
        "collect [4, 5, 6]",
    ]
    batcher.close()


async def test_overlap_out_of_memory_and_failures_stay_with_their_batch() -> None:
    """The staged batch runs out of memory when it starts: the batch on the device is collected
    first, then the staged one is retried in halves; a failure when collecting fails only its
    own batch and counts against health."""
    launches = Launches()
    launches.oom_at_start = {5}
    launches.fail_at_collect = {9}
    released: list[int] = []
    batcher = overlapping(launches, on_exhausted=lambda: released.append(1))
    outs = await asyncio.gather(
        *batcher.submit_many([("a", i) for i in range(12)], deadline=far()),
        return_exceptions=True,
    )
    values = [o if isinstance(o, BaseException) else o.value for o in outs]
    assert values[:8] == [i * 10 for i in range(8)]
    assert all(isinstance(v, RuntimeError) for v in values[8:])
    assert launches.log[:5] == [
        "start [0, 1, 2, 3]",
        "start [4, 5, 6, 7]",  # out of memory at its start
        "collect [0, 1, 2, 3]",
        "start [4, 5]",  # only then released and retried, in halves
        "start [4]",
    ]
    assert released == [1, 1]
    assert healthy(batcher)  # one failure in a row (unhealthy after 3)
    assert (await batcher.submit(("b", 1), deadline=far())).value == 10
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


async def test_calls_and_close_wait_for_the_batch_on_the_device() -> None:
    launches = Launches()
    launches.collecting.clear()
    batcher = overlapping(launches)
    batch = batcher.submit_many([("a", i) for i in range(4)], deadline=far())
    await until(lambda: launches.log == ["start [0, 1, 2, 3]"])
    call = asyncio.ensure_future(batcher.call(lambda: launches.log.append("call")))
    await asyncio.sleep(0.05)
    assert launches.log == ["start [0, 1, 2, 3]"]
    launches.collecting.set()
    await call
    assert launches.log == ["start [0, 1, 2, 3]", "collect [0, 1, 2, 3]", "call"]
    launches.collecting.clear()
    staged = batcher.submit_many([("a", i) for i in range(4, 8)], deadline=far())
    await until(lambda: "start [4, 5, 6, 7]" in launches.log)
    closer = threading.Thread(target=batcher.close)
    closer.start()
    launches.collecting.set()
    closer.join()
    assert [(await f).value for f in (*batch, *staged)] == [i * 10 for i in range(8)]


def test_invalid_configuration_is_refused() -> None:
    with pytest.raises(ValueError, match="max_batch_size"):
        Batcher(
            Recorder(), group_key=lambda item: item, max_batch_size=0, max_wait_s=0, queue_size=1
        )
