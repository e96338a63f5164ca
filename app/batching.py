"""The dynamic batcher: a bounded queue in front of one worker thread.

Items enter from the event loop (``submit``/``submit_many``) and wait on futures. When the
worker is free it takes the oldest item and every queued item with the same group key, up to
``max_batch_size``, waiting at most ``max_wait_s`` for more. Other groups wait for their own
batch; the oldest item always goes next, so none starves and no batch mixes groups. Cancelled
and expired items are dropped before compute.

The batcher knows nothing of what it batches: it calls ``handler(items) -> results`` and reports
through a ``BatchObserver``. With a ``launcher`` instead (``launcher(items) -> collect``, where
``collect()`` returns the results), a batch is started, and while it runs on its device the next
batch, if one is already full, is started too, before the first is collected: on a GPU the next
batch's host copy and transfer overlap the current batch's compute. Only a full batch is started
early, so batches form as without a launcher until the queue holds more than one can take.
A handler failure fails only its own batch. A resource-exhausted
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
# Starts a batch and returns what collects its results (blocking until they are ready).
Launcher: TypeAlias = "Callable[[Sequence[In]], Callable[[], Sequence[Out]]]"
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


@dataclass
class _Started(Generic[In, Out]):
    """A batch started on its device: what collects its results, or why it could not start."""

    jobs: list[_Job[In, Out]]  # the live ones (cancelled and expired jobs were answered)
    dequeued: float
    began: float
    collect: Callable[[], Sequence[Out]] | BaseException
    taken: int  # jobs taken from the queue for it (busy until it is finished)


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
        launcher: Launcher[In, Out] | None = None,
        name: str = "simscore-batcher",
    ) -> None:
        if max_batch_size < 1 or queue_size < 1 or max_wait_s < 0 or unhealthy_after < 1:
            raise ValueError("max_batch_size, queue_size and unhealthy_after >= 1, max_wait_s >= 0")
        self._launch: Launcher[In, Out] = launcher or _at_once(handler)
        self._overlap = launcher is not None
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
    def overlap(self) -> bool:
        """Whether a full next batch starts before the current one is collected."""
        return self._overlap

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
        started: _Started[In, Out] | None = None  # started, not yet collected
        while True:
            if started is not None:
                # Overlap: start the next batch if one is already full, then collect this one
                # (not when this one failed to start: it is retried first, on its own).
                failed = isinstance(started.collect, BaseException)
                following = None if failed else self._take_full()
                next_started = self._start(following) if following else None
                self._finish(started)
                started = next_started
                continue
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
            started = self._start(work)
            if not self._overlap:
                self._finish(started)
                started = None

    def _next_work(self) -> list[_Job[In, Out]] | _Call | None:
        with self._cond:
            while not self._groups and not self._calls:
                if self._stopping:
                    return None
                self._cond.wait()
            if self._calls:
                return self._calls.popleft()
            key, group = self._oldest_group()
            fill_by = group[0].enqueued_at + self.max_wait_s
            while len(group) < self.max_batch_size and not self._stopping:
                remaining = fill_by - time.monotonic()
                if remaining <= 0:
                    break
                self._cond.wait(remaining)
            return self._take(key, group)

    def _take_full(self) -> list[_Job[In, Out]] | None:
        """The oldest group's next batch if it is full now (no waiting, no calls skipped)."""
        with self._cond:
            if self._stopping or self._calls or not self._groups:
                return None
            key, group = self._oldest_group()
            return self._take(key, group) if len(group) >= self.max_batch_size else None

    def _oldest_group(self) -> tuple[Hashable, deque[_Job[In, Out]]]:
        return min(self._groups.items(), key=lambda kv: kv[1][0].enqueued_at)

    def _take(self, key: Hashable, group: deque[_Job[In, Out]]) -> list[_Job[In, Out]]:
        jobs = [group.popleft() for _ in range(min(len(group), self.max_batch_size))]
        if not group:
            del self._groups[key]
        self._depth -= len(jobs)
        self._busy += len(jobs)
        return jobs

    def _start(self, jobs: list[_Job[In, Out]]) -> _Started[In, Out]:
        """Drop cancelled and expired jobs, then start the batch of the others."""
        now = time.monotonic()
        live: list[_Job[In, Out]] = []
        try:
            for job in jobs:
                if not job.future.set_running_or_notify_cancel():
                    continue  # its request was cancelled (client gone or timed out)
                if now > job.deadline:
                    _fail(job.future, DeadlineExceeded("the request timed out while queued"))
                else:
                    live.append(job)
                    if self._observer:
                        self._observer.queue_wait(now - job.enqueued_at)
        except BaseException as exc:  # never let the worker die
            log.exception("batcher: unexpected failure starting a batch")
            for job in jobs:
                _fail(job.future, exc)
            live = []
        return self._launched(live, dequeued=now, taken=len(jobs))

    def _launched(
        self, jobs: list[_Job[In, Out]], *, dequeued: float, taken: int = 0
    ) -> _Started[In, Out]:
        began = time.monotonic()
        collect: Callable[[], Sequence[Out]] | BaseException = list
        if jobs:
            try:
                collect = self._launch([job.item for job in jobs])
            except Exception as exc:
                collect = self._failure(exc, jobs)
        return _Started(jobs, dequeued, began, collect, taken)

    def _finish(self, started: _Started[In, Out]) -> None:
        """Collect a started batch (retrying in halves after an out-of-memory failure) and
        answer its jobs; never raises."""
        taken, jobs = started.taken, started.jobs
        try:
            self._complete(started)
        except BaseException as exc:  # never let the worker die
            log.exception("batcher: unexpected failure in a batch")
            for job in jobs:
                _fail(job.future, exc)
        finally:
            with self._cond:
                self._busy -= taken
            self._report_depth()

    def _complete(self, started: _Started[In, Out]) -> None:
        retries: list[list[_Job[In, Out]]] = []
        current: _Started[In, Out] | None = started
        while current is not None:
            jobs, dequeued = current.jobs, current.dequeued
            results = self._collect(current)  # drops what collects, and so the batch's tensors
            if isinstance(results, BaseException):
                retries[:0] = self._recover(jobs, results)
            else:
                self._deliver(current, results)
            current = None
            if retries:
                current = self._launched(retries.pop(0), dequeued=dequeued)

    def _collect(self, started: _Started[In, Out]) -> Sequence[Out] | BaseException:
        """The batch's results, or its exception with the traceback's frames cleared."""
        collect, started.collect = started.collect, list
        if isinstance(collect, BaseException):
            return collect
        try:
            results = collect()
            if len(results) != len(started.jobs):
                raise RuntimeError(
                    f"handler returned {len(results)} results for {len(started.jobs)}"
                )
            return results
        except Exception as exc:
            return self._failure(exc, started.jobs)

    def _failure(self, exc: Exception, jobs: list[_Job[In, Out]]) -> BaseException:
        if self._is_exhausted(exc):
            # The frames hold the failed attempt's tensors: drop them, keep the message.
            traceback.clear_frames(exc.__traceback__)
            exc.__context__ = exc.__cause__ = None
            return exc.with_traceback(None)
        log.exception("batch of %d items failed", len(jobs))
        return exc

    def _deliver(self, started: _Started[In, Out], results: Sequence[Out]) -> None:
        compute_s = time.monotonic() - started.began
        self._failures_in_a_row = 0
        if self._observer:
            self._observer.batch_done(len(started.jobs), compute_s)
        for job, value in zip(started.jobs, results, strict=True):
            outcome = Outcome(
                value, started.dequeued - job.enqueued_at, compute_s, len(started.jobs)
            )
            if not job.future.done():
                job.future.set_result(outcome)

    def _recover(self, jobs: list[_Job[In, Out]], exc: BaseException) -> list[list[_Job[In, Out]]]:
        """The halves to retry after an out-of-memory failure (none after any other)."""
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


def _at_once(handler: Callable[[Sequence[In]], Sequence[Out]]) -> Launcher[In, Out]:
    """A launcher that computes the batch when started."""

    def launch(items: Sequence[In]) -> Callable[[], Sequence[Out]]:
        results = handler(items)
        return lambda: results

    return launch


def _fail(future: concurrent.futures.Future[T], exc: BaseException) -> None:
    if not future.done():
        future.set_exception(exc)
