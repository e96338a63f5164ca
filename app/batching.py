"""The dynamic batcher: a bounded queue in front of one worker thread.

Items enter from the event loop (``submit``/``submit_many``) and wait on futures. When the
worker is free it takes the oldest item and every queued item with the same group key, up to
``max_batch_size``, waiting at most ``max_wait_s`` for more. Other groups wait for their own
batch; the oldest item always goes next, so none starves and no batch mixes groups. Cancelled
and expired items are dropped before compute.

The batcher knows nothing of what it batches: it calls ``handler(items) -> results`` and reports
through a ``BatchObserver``. A handler failure fails only its own batch. A resource-exhausted
failure (out of memory) is recovered outside the ``except`` block, once the failed attempt and
its traceback are gone (so their memory can be released), by splitting the batch in halves down
to single items. ``unhealthy_after`` consecutive other failures mark the batcher unhealthy (a
device in a sticky error state fails every batch) until a batch succeeds.

``call(fn)`` runs any function on the worker thread (warm-up: per-thread device handles are
then created where the batches run).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import threading
import time
import traceback
from collections import deque
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, Protocol, TypeAlias, TypeVar

from app.errors import DeadlineExceeded, NotReady, Overloaded

log = logging.getLogger(__name__)

In = TypeVar("In")
Out = TypeVar("Out")
T = TypeVar("T")
# A function to run on the worker thread, and the future of its result.
_Call: TypeAlias = "tuple[Callable[[], Any], concurrent.futures.Future[Any]]"


class BatchObserver(Protocol):
    """What the batcher reports (the service wires it to Prometheus)."""

    def queue_depth(self, items: int) -> None: ...

    def queue_wait(self, seconds: float) -> None: ...

    def batch_done(self, items: int, seconds: float) -> None: ...

    def batch_failed(self, items: int, exc: BaseException, *, exhausted: bool) -> None: ...


@dataclass(frozen=True)
class Outcome(Generic[Out]):
    """A result and how long it waited and ran."""

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
        exhausted_error: Callable[[], Exception] = lambda: RuntimeError("resources exhausted"),
        unhealthy_after: int = 3,
        observer: BatchObserver | None = None,
        name: str = "simscore-batcher",
    ) -> None:
        if max_batch_size < 1 or queue_size < 1 or max_wait_s < 0 or unhealthy_after < 1:
            raise ValueError("max_batch_size, queue_size and unhealthy_after >= 1, max_wait_s >= 0")
        self._handler = handler
        self._group_key = group_key
        self.max_batch_size = max_batch_size
        self.max_wait_s = max_wait_s
        self.queue_size = queue_size
        self._is_exhausted = is_resource_exhausted
        self._on_exhausted = on_resource_exhausted
        self._exhausted_error = exhausted_error
        self._unhealthy_after = unhealthy_after
        self._observer = observer
        self._groups: dict[Hashable, deque[_Job[In, Out]]] = {}
        self._calls: deque[_Call] = deque()
        self._depth = 0
        self._busy = 0
        self._failures_in_a_row = 0
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
    def healthy(self) -> bool:
        """False after ``unhealthy_after`` failed batches in a row (out of memory excepted)."""
        return self._failures_in_a_row < self._unhealthy_after

    @property
    def depth(self) -> int:
        """Items queued or being computed."""
        with self._cond:
            return self._depth + self._busy

    def close(self, timeout_s: float = 10.0) -> None:
        """Stop the worker; items still queued fail with ``NotReady``."""
        with self._cond:
            self._stopping = True
            leftovers: list[concurrent.futures.Future[Any]] = [
                job.future for group in self._groups.values() for job in group
            ]
            leftovers += [future for _, future in self._calls]
            self._groups.clear()
            self._calls.clear()
            self._depth = 0
            self._cond.notify_all()
        for future in leftovers:
            _fail(future, NotReady("the server is shutting down"))
        if self._thread.is_alive():
            self._thread.join(timeout_s)
        self._report_depth()

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
            if self._stopping:
                raise NotReady("the batch worker has stopped")
            if self._depth + len(jobs) > self.queue_size:
                raise Overloaded(
                    f"the queue is full ({self._depth} of {self.queue_size} items waiting, "
                    f"{len(jobs)} more asked for); retry after a short wait"
                )
            for job in jobs:
                self._groups.setdefault(job.key, deque()).append(job)
            self._depth += len(jobs)
            self._cond.notify_all()
        self._report_depth()
        return [asyncio.wrap_future(job.future) for job in jobs]

    async def call(self, fn: Callable[[], T]) -> T:
        """Run ``fn`` on the worker thread, between batches, and return what it returns."""
        future: concurrent.futures.Future[T] = concurrent.futures.Future()
        with self._cond:
            if self._stopping:
                raise NotReady("the batch worker has stopped")
            self._calls.append((fn, future))
            self._cond.notify_all()
        return await asyncio.wrap_future(future)

    # -- worker ------------------------------------------------------------------------------

    def _run(self) -> None:
        while True:
            try:
                work = self._next_work()
            except Exception:  # pragma: no cover - a bug here must not kill the worker
                log.exception("batcher: failed to take a batch")
                continue
            if work is None:
                return
            if not isinstance(work, list):
                _run_call(*work)
                continue
            try:
                self._process(work)
            except BaseException as exc:  # never let the worker die
                log.exception("batcher: unexpected failure in a batch")
                for job in work:
                    _fail(job.future, exc)
            finally:
                with self._cond:
                    self._busy -= len(work)
                self._report_depth()

    def _next_work(self) -> list[_Job[In, Out]] | _Call | None:
        with self._cond:
            while not self._groups and not self._calls:
                if self._stopping:
                    return None
                self._cond.wait()
            if self._calls:
                return self._calls.popleft()
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
                if self._observer:
                    self._observer.queue_wait(now - job.enqueued_at)
        pending = [live] if live else []
        while pending:
            part = pending.pop(0)
            halves = self._compute(part, started=now)
            pending[:0] = halves

    def _compute(self, jobs: list[_Job[In, Out]], *, started: float) -> list[list[_Job[In, Out]]]:
        """Run one batch; returns the halves to retry after an out-of-memory failure."""
        begin = time.monotonic()
        failure = self._attempt(jobs)
        compute_s = time.monotonic() - begin
        if isinstance(failure, BaseException):
            return self._recover(jobs, failure)
        self._failures_in_a_row = 0
        if self._observer:
            self._observer.batch_done(len(jobs), compute_s)
        for job, value in zip(jobs, failure, strict=True):
            outcome = Outcome(value, started - job.enqueued_at, compute_s, len(jobs))
            if not job.future.done():
                job.future.set_result(outcome)
        return []

    def _attempt(self, jobs: list[_Job[In, Out]]) -> Sequence[Out] | BaseException:
        """The handler's results, or its exception with the traceback's frames cleared."""
        try:
            results = self._handler([job.item for job in jobs])
            if len(results) != len(jobs):
                raise RuntimeError(f"handler returned {len(results)} results for {len(jobs)}")
            return results
        except Exception as exc:
            if self._is_exhausted(exc):
                # The frames hold the failed attempt's tensors: drop them, keep the message.
                traceback.clear_frames(exc.__traceback__)
                exc.__context__ = exc.__cause__ = None
                return exc.with_traceback(None)
            log.exception("batch of %d items failed", len(jobs))
            return exc

    def _recover(self, jobs: list[_Job[In, Out]], exc: BaseException) -> list[list[_Job[In, Out]]]:
        exhausted = self._is_exhausted(exc)
        if self._observer:
            self._observer.batch_failed(len(jobs), exc, exhausted=exhausted)
        if not exhausted:
            self._failures_in_a_row += 1
            for job in jobs:
                _fail(job.future, exc)
            return []
        del exc  # nothing of the failed attempt stays referenced from here on
        self._on_exhausted()
        if len(jobs) > 1:
            half = len(jobs) // 2
            log.warning("out of memory at batch %d; retrying in halves", len(jobs))
            return [jobs[:half], jobs[half:]]
        for job in jobs:
            _fail(job.future, self._exhausted_error())
        return []

    def _report_depth(self) -> None:
        if self._observer:
            self._observer.queue_depth(self._depth)


def _run_call(fn: Callable[[], Any], future: concurrent.futures.Future[Any]) -> None:
    if not future.set_running_or_notify_cancel():
        return
    try:
        future.set_result(fn())
    except BaseException as exc:
        future.set_exception(exc)


def _fail(future: concurrent.futures.Future[T], exc: BaseException) -> None:
    if not future.done():
        future.set_exception(exc)
