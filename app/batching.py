"""The dynamic batcher: a bounded queue in front of one worker thread that runs the model.

Requests enter from the event loop (``submit``/``submit_many``) and wait on futures. When the
worker is free it takes the oldest request and every queued request with the same group key
(the tensor shape), up to ``max_batch_size``, waiting at most ``max_wait_s`` for more. Other
groups wait for their own batch; the oldest request always goes next, so none starves and no
batch is padded across shapes. Cancelled and expired requests are dropped before compute.

The batcher knows nothing of images or models: it calls ``handler(items) -> results``.
A handler failure fails only its own batch; a resource-exhausted failure (out of memory) splits
the batch in halves and retries down to single items.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from app.errors import DeadlineExceeded, NotReady, OutOfMemory, Overloaded
from app.observability import Metrics

log = logging.getLogger(__name__)

In = TypeVar("In")
Out = TypeVar("Out")
T = TypeVar("T")


@dataclass(frozen=True)
class Outcome(Generic[Out]):
    """A result and how long it waited and ran, for timing fields and logs."""

    value: Out
    queue_wait_s: float
    compute_s: float
    batch_size: int


@dataclass
class _Job(Generic[In, Out]):
    item: In
    key: Hashable
    deadline: float  # time.monotonic() seconds
    enqueued_at: float = field(default_factory=time.monotonic)
    future: concurrent.futures.Future[Outcome[Out]] = field(
        default_factory=concurrent.futures.Future
    )


class Batcher(Generic[In, Out]):
    """See the module docstring. Start with ``start()``, stop with ``close()``."""

    def __init__(
        self,
        handler: Callable[[Sequence[In]], Sequence[Out]],
        *,
        group_key: Callable[[In], Hashable],
        max_batch_size: int,
        max_wait_s: float,
        queue_size: int,
        is_resource_exhausted: Callable[[BaseException], bool] = lambda exc: False,
        on_resource_exhausted: Callable[[], None] = lambda: None,
        metrics: Metrics | None = None,
        name: str = "simscore-batcher",
    ) -> None:
        if max_batch_size < 1 or queue_size < 1 or max_wait_s < 0:
            raise ValueError("max_batch_size and queue_size must be >= 1, max_wait_s >= 0")
        self._handler = handler
        self._group_key = group_key
        self.max_batch_size = max_batch_size
        self.max_wait_s = max_wait_s
        self.queue_size = queue_size
        self._is_exhausted = is_resource_exhausted
        self._on_exhausted = on_resource_exhausted
        self._metrics = metrics
        self._groups: dict[Hashable, deque[_Job[In, Out]]] = {}
        self._depth = 0
        self._busy = 0
        self._admitting = True
        self._stopping = False
        self._cond = threading.Condition()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> None:
        self._thread.start()

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    @property
    def depth(self) -> int:
        """Items queued or being computed."""
        with self._cond:
            return self._depth + self._busy

    def stop_admitting(self) -> None:
        with self._cond:
            self._admitting = False

    async def drain(self, timeout_s: float) -> bool:
        """Wait until every accepted item is answered; False if ``timeout_s`` ran out first."""
        deadline = time.monotonic() + timeout_s
        while self.depth:
            if time.monotonic() >= deadline:
                return False
            await asyncio.sleep(0.01)
        return True

    def close(self, timeout_s: float = 10.0) -> None:
        """Stop the worker; items still queued fail with ``NotReady``."""
        with self._cond:
            self._admitting = False
            self._stopping = True
            leftovers = [job for group in self._groups.values() for job in group]
            self._groups.clear()
            self._depth = 0
            self._cond.notify_all()
        for job in leftovers:
            _fail(job.future, NotReady("the server is shutting down"))
        if self._thread.is_alive():
            self._thread.join(timeout_s)
        self._gauge()

    # -- admission ---------------------------------------------------------------------------

    async def submit(self, item: In, *, deadline: float) -> Outcome[Out]:
        """Queue one item and wait for its result (raises what its batch raised)."""
        (outcome,) = self.submit_many([item], deadline=deadline)
        return await outcome

    def submit_many(
        self, items: Sequence[In], *, deadline: float
    ) -> list[asyncio.Future[Outcome[Out]]]:
        """Queue items together (all or none) and return one awaitable per item."""
        jobs = [_Job[In, Out](item, self._group_key(item), deadline) for item in items]
        with self._cond:
            if not self._admitting:
                raise NotReady("the server is draining or not ready; retry on another replica")
            if self._depth + len(jobs) > self.queue_size:
                raise Overloaded(
                    f"the queue is full ({self._depth} of {self.queue_size} pairs waiting); "
                    "retry after a short wait"
                )
            for job in jobs:
                self._groups.setdefault(job.key, deque()).append(job)
            self._depth += len(jobs)
            self._cond.notify_all()
        self._gauge()
        return [asyncio.wrap_future(job.future) for job in jobs]

    # -- worker ------------------------------------------------------------------------------

    def _run(self) -> None:
        while True:
            try:
                jobs = self._next_batch()
            except Exception:  # pragma: no cover - a bug here must not kill the worker
                log.exception("batcher: failed to take a batch")
                continue
            if jobs is None:
                return
            try:
                self._process(jobs)
            except BaseException as exc:  # never let the worker die
                log.exception("batcher: unexpected failure in a batch")
                for job in jobs:
                    _fail(job.future, exc)
            finally:
                with self._cond:
                    self._busy -= len(jobs)
                self._gauge()

    def _next_batch(self) -> list[_Job[In, Out]] | None:
        with self._cond:
            while not self._groups:
                if self._stopping:
                    return None
                self._cond.wait()
            key, group = min(self._groups.items(), key=lambda kv: kv[1][0].enqueued_at)
            fill_by = group[0].enqueued_at + self.max_wait_s
            while len(group) < self.max_batch_size and not self._stopping:
                remaining = fill_by - time.monotonic()
                if remaining <= 0:
                    break
                self._cond.wait(remaining)
            jobs = [group.popleft() for _ in range(min(len(group), self.max_batch_size))]
            if not group:
                del self._groups[key]
            self._depth -= len(jobs)
            self._busy += len(jobs)
        return jobs

    def _process(self, jobs: list[_Job[In, Out]]) -> None:
        now = time.monotonic()
        live: list[_Job[In, Out]] = []
        for job in jobs:
            if not job.future.set_running_or_notify_cancel():
                continue  # its request was cancelled (client gone or timed out)
            if now > job.deadline:
                _fail(job.future, DeadlineExceeded("the request timed out while queued"))
            else:
                live.append(job)
                if self._metrics:
                    self._metrics.queue_wait.observe(now - job.enqueued_at)
        if live:
            self._compute(live, started=now)

    def _compute(self, jobs: list[_Job[In, Out]], *, started: float) -> None:
        begin = time.monotonic()
        try:
            results = self._handler([job.item for job in jobs])
            if len(results) != len(jobs):
                raise RuntimeError(f"handler returned {len(results)} results for {len(jobs)}")
        except Exception as exc:
            if self._is_exhausted(exc):
                self._on_exhausted()
                if len(jobs) > 1:
                    half = len(jobs) // 2
                    log.warning("out of memory at batch %d; retrying in halves", len(jobs))
                    self._compute(jobs[:half], started=started)
                    self._compute(jobs[half:], started=started)
                    return
                exc = OutOfMemory(
                    "out of memory scoring a single pair; send smaller images or lower "
                    "SIMSCORE_MAX_SIDE"
                )
            for job in jobs:
                _fail(job.future, exc)
            return
        compute_s = time.monotonic() - begin
        if self._metrics:
            self._metrics.batch_size.observe(len(jobs))
            self._metrics.inference.observe(compute_s)
        for job, value in zip(jobs, results, strict=True):
            outcome = Outcome(value, started - job.enqueued_at, compute_s, len(jobs))
            if not job.future.done():
                job.future.set_result(outcome)

    def _gauge(self) -> None:
        if self._metrics:
            self._metrics.queue_depth.set(self._depth)


def _fail(future: concurrent.futures.Future[T], exc: BaseException) -> None:
    if not future.done():
        future.set_exception(exc)
