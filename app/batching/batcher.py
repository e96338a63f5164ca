"""The dynamic batcher: a bounded queue (``WorkQueue``) in front of one worker thread that runs
batches (``BatchRunner``); the module docstring of ``app.batching`` says how batches form."""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import threading
from collections.abc import Callable, Hashable, Sequence
from typing import Any, Generic

from app.batching.attempts import BatchRunner, Started
from app.batching.jobs import BatchObserver, BatchTracer, In, Job, Launcher, Out, Outcome, T, fail
from app.batching.queue import WorkQueue
from app.errors import NotReady

log = logging.getLogger(__name__)


class Batcher(Generic[In, Out]):
    """See ``app.batching``. Start with ``start()``, stop with ``close()``."""

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
        cost: Callable[[In], int] = lambda item: 1,
        max_batch_cost: int | None = None,
        name: str = "simscore-batcher",
        tracer: BatchTracer[In] | None = None,
    ) -> None:
        if max_batch_size < 1 or queue_size < 1 or max_wait_s < 0 or unhealthy_after < 1:
            raise ValueError("max_batch_size, queue_size and unhealthy_after >= 1, max_wait_s >= 0")
        if max_batch_cost is not None and max_batch_cost < 1:
            raise ValueError("max_batch_cost >= 1 (or None: no cost budget)")
        self._group_key = group_key
        self._cost = cost
        self._queue: WorkQueue[In, Out] = WorkQueue(
            max_batch_size=max_batch_size,
            max_wait_s=max_wait_s,
            queue_size=queue_size,
            max_batch_cost=max_batch_cost,
        )
        self._runner: BatchRunner[In, Out] = BatchRunner(
            launcher or _at_once(handler),
            is_resource_exhausted=is_resource_exhausted,
            on_resource_exhausted=on_resource_exhausted,
            exhausted_error=exhausted_error,
            unhealthy_after=unhealthy_after,
            observer=observer,
            tracer=tracer,
        )
        self._overlap = launcher is not None
        self._observer = observer
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
        return self._runner.healthy

    @property
    def depth(self) -> int:
        """Items queued or being computed."""
        return self._queue.depth

    def close(self, timeout_s: float = 10.0) -> None:
        """Stop the worker; items still queued fail with ``NotReady``; batches already taken
        are finished."""
        for future in self._queue.close():
            fail(future, NotReady("the server is shutting down"))
        if self._thread.is_alive():
            self._thread.join(timeout_s)
        self._report_depth()

    # -- admission ---------------------------------------------------------------------------

    async def submit(self, item: In, *, deadline: float) -> Outcome[Out]:
        """Queue one item and wait for its result (raises what its batch raised)."""
        (outcome,) = self.submit_many([item], deadline=deadline)
        return await outcome

    def submit_many(
        self, items: Sequence[In], *, deadline: float, contexts: Sequence[object] | None = None
    ) -> list[asyncio.Future[Outcome[Out]]]:
        """Queue items together (all or none) and return one awaitable per item; ``contexts``
        (one per item) go with them to the ``BatchTracer``."""
        if contexts is not None and len(contexts) != len(items):
            raise ValueError(f"{len(contexts)} contexts for {len(items)} items")
        attached = contexts if contexts is not None else [None] * len(items)
        jobs = [
            Job[In, Out](item, self._group_key(item), deadline, self._cost(item), context=context)
            for item, context in zip(items, attached, strict=True)
        ]
        self._queue.put(jobs)
        self._report_depth()
        return [asyncio.wrap_future(job.future) for job in jobs]

    async def call(self, fn: Callable[[], T]) -> T:
        """Run ``fn`` on the worker thread, between batches, and return what it returns."""
        future: concurrent.futures.Future[T] = concurrent.futures.Future()
        self._queue.put_call((fn, future))
        return await asyncio.wrap_future(future)

    # -- worker ------------------------------------------------------------------------------

    def _run(self) -> None:
        started: Started[In, Out] | None = None  # started, not yet collected
        while True:
            if started is not None:
                # Overlap: start the next batch if one is already full, then collect this one
                # (not when this one failed to start: it is retried first, on its own).
                following = None if started.failed else self._queue.take_full()
                next_started = self._runner.start(following) if following else None
                self._finish(started)
                started = next_started
                continue
            try:
                work = self._queue.next_work()
            except Exception:  # pragma: no cover - a bug here must not kill the worker
                log.exception("batcher: failed to take a batch")
                continue
            if work is None:
                return
            if not isinstance(work, list):
                _run_call(*work)
                continue
            started = self._runner.start(work)
            if not self._overlap:
                self._finish(started)
                started = None

    def _finish(self, started: Started[In, Out]) -> None:
        self._runner.finish(started)
        self._queue.done(started.taken)
        self._report_depth()

    def _report_depth(self) -> None:
        if self._observer:
            self._observer.queue_depth(self._queue.queued)


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
