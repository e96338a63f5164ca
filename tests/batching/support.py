"""Stand-ins for what the batcher batches (no model), and how the tests build and wait on one."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

from app.batching import Batcher, BatchTracer
from app.errors import OutOfMemory


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
    cost: Callable[[tuple[str, int]], int] = lambda item: 1,
    max_batch_cost: int | None = None,
    tracer: BatchTracer[tuple[str, int]] | None = None,
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
        cost=cost,
        max_batch_cost=max_batch_cost,
        tracer=tracer,
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


def overlapping(launches: Launches, **kwargs: Any) -> Batcher[tuple[str, int], int]:
    """A batcher whose batches (of four) are started by ``launches``."""

    def unused(items: Sequence[tuple[str, int]]) -> list[int]:
        raise AssertionError("with a launcher, the handler is not called")

    return make(unused, launcher=launches, max_batch_size=4, **kwargs)
