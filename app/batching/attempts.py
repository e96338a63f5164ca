"""Running one batch: start it, collect it, answer its jobs.

A failure fails only its own batch. A resource-exhausted failure (out of memory) is recovered
outside the ``except`` block, once the failed attempt and its traceback are gone (so their memory
can be released), by splitting the batch in halves down to single jobs. ``unhealthy_after``
consecutive other failures make the runner unhealthy (a device in a sticky error state fails
every batch) until a batch succeeds. A ``BatchTracer`` hears of each run: the batch, then each
half retried after running out of memory (``split_of`` the run that failed).
"""

from __future__ import annotations

import logging
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Generic

from app.batching.jobs import BatchObserver, BatchTracer, In, Job, Launcher, Out, Outcome, fail
from app.errors import DeadlineExceeded

log = logging.getLogger(__name__)


@dataclass
class Started(Generic[In, Out]):
    """A batch started on its device: what collects its results, or why it could not start."""

    jobs: list[Job[In, Out]]  # the live ones (cancelled and expired jobs were answered)
    dequeued: float
    began: float
    collect: Callable[[], Sequence[Out]] | BaseException
    taken: int  # jobs taken from the queue for it
    traced: object = None  # the BatchTracer's handle for this run, until it is told the end

    @property
    def failed(self) -> bool:
        return isinstance(self.collect, BaseException)


class BatchRunner(Generic[In, Out]):
    """Starts and finishes batches with ``launch`` (see the module docstring)."""

    def __init__(
        self,
        launch: Launcher[In, Out],
        *,
        is_resource_exhausted: Callable[[BaseException], bool],
        on_resource_exhausted: Callable[[], None],
        exhausted_error: Callable[[], Exception],
        unhealthy_after: int,
        observer: BatchObserver | None,
        tracer: BatchTracer[In] | None = None,
    ) -> None:
        self._launch = launch
        self._is_exhausted = is_resource_exhausted
        self._on_exhausted = on_resource_exhausted
        self._exhausted_error = exhausted_error
        self._unhealthy_after = unhealthy_after
        self._observer = observer
        self._tracer = tracer
        self._failures_in_a_row = 0
        self._last_done = 0.0  # time.monotonic() when the last batch was finished

    @property
    def healthy(self) -> bool:
        """False after ``unhealthy_after`` failed batches in a row (out of memory excepted)."""
        return self._failures_in_a_row < self._unhealthy_after

    def start(self, jobs: list[Job[In, Out]]) -> Started[In, Out]:
        """Drop cancelled and expired jobs, then start the batch of the others; never raises."""
        now = time.monotonic()
        live: list[Job[In, Out]] = []
        try:
            for job in jobs:
                if not job.future.set_running_or_notify_cancel():
                    continue  # its request was cancelled (client gone or timed out)
                if now > job.deadline:
                    fail(job.future, DeadlineExceeded("the request timed out while queued"))
                else:
                    live.append(job)
                    if self._observer:
                        self._observer.queue_wait(now - job.enqueued_at)
        except BaseException as exc:  # never let the worker die
            log.exception("batcher: unexpected failure starting a batch")
            for job in jobs:
                fail(job.future, exc)
            live = []
        return self._launched(live, dequeued=now, taken=len(jobs))

    def finish(self, started: Started[In, Out]) -> None:
        """Collect a started batch (retrying in halves after an out-of-memory failure) and
        answer its jobs; never raises."""
        jobs = started.jobs
        try:
            self._complete(started)
        except BaseException as exc:  # never let the worker die
            log.exception("batcher: unexpected failure in a batch")
            self._traced_end(started, exc)
            for job in jobs:
                fail(job.future, exc)
        finally:
            self._last_done = time.monotonic()

    def _launched(
        self,
        jobs: list[Job[In, Out]],
        *,
        dequeued: float,
        taken: int = 0,
        split_of: object = None,
    ) -> Started[In, Out]:
        began = time.monotonic()
        collect: Callable[[], Sequence[Out]] | BaseException = list
        traced = None
        if jobs:
            traced = self._traced_start(jobs, split_of)
            try:
                collect = self._launch([job.item for job in jobs])
            except BaseException as exc:  # even a non-Exception must not kill the worker
                collect = self._failure(exc, jobs)
        return Started(jobs, dequeued, began, collect, taken, traced)

    def _complete(self, started: Started[In, Out]) -> None:
        retries: list[tuple[list[Job[In, Out]], object]] = []  # a half, and the run it split
        current: Started[In, Out] | None = started
        while current is not None:
            jobs, dequeued = current.jobs, current.dequeued
            results = self._collect(current)  # drops what collects, and so the batch's tensors
            failed = results if isinstance(results, BaseException) else None
            split_of = self._traced_end(current, failed)
            if isinstance(results, BaseException):
                retries[:0] = [(half, split_of) for half in self._recover(jobs, results)]
            else:
                self._deliver(current, results)
            current = None
            if retries:
                half, split_of = retries.pop(0)
                current = self._launched(half, dequeued=dequeued, split_of=split_of)

    def _traced_start(self, jobs: list[Job[In, Out]], split_of: object) -> object:
        """The tracer's handle for a run of ``jobs`` (None without a tracer, or if it failed)."""
        if self._tracer is None:
            return None
        try:
            items, contexts = [job.item for job in jobs], [job.context for job in jobs]
            return self._tracer.batch_started(items, contexts, split_of=split_of)
        except Exception:  # tracing must never fail a batch
            log.exception("batcher: the batch tracer failed at a batch's start")
            return None

    def _traced_end(self, started: Started[In, Out], error: BaseException | None) -> object:
        """Tell the tracer a run ended (once); its handle, for the halves of a failed run."""
        traced, started.traced = started.traced, None
        if self._tracer is not None and traced is not None:
            try:
                self._tracer.batch_ended(traced, error)
            except Exception:  # tracing must never fail a batch
                log.exception("batcher: the batch tracer failed at a batch's end")
        return traced

    def _collect(self, started: Started[In, Out]) -> Sequence[Out] | BaseException:
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
        except BaseException as exc:  # even a non-Exception must not kill the worker
            return self._failure(exc, started.jobs)

    def _failure(self, exc: BaseException, jobs: list[Job[In, Out]]) -> BaseException:
        if self._is_exhausted(exc):
            # The frames hold the failed attempt's tensors: drop them, keep the message.
            traceback.clear_frames(exc.__traceback__)
            exc.__context__ = exc.__cause__ = None
            return exc.with_traceback(None)
        log.exception("batch of %d items failed", len(jobs))
        return exc

    def _deliver(self, started: Started[In, Out], results: Sequence[Out]) -> None:
        # From its start, or, for a batch started while the one before still ran (overlap),
        # from when that one ended: batch times then add up to the time the device was busy.
        now = time.monotonic()
        compute_s = now - max(started.began, self._last_done)
        self._failures_in_a_row = 0
        if self._observer:
            self._observer.batch_done(len(started.jobs), compute_s)
        for job, value in zip(started.jobs, results, strict=True):
            outcome = Outcome(
                value, started.dequeued - job.enqueued_at, compute_s, len(started.jobs)
            )
            if not job.future.done():
                job.future.set_result(outcome)

    def _recover(self, jobs: list[Job[In, Out]], exc: BaseException) -> list[list[Job[In, Out]]]:
        """The halves to retry after an out-of-memory failure (none after any other)."""
        exhausted = self._is_exhausted(exc)
        if self._observer:
            self._observer.batch_failed(len(jobs), exc, exhausted=exhausted)
        if not exhausted:
            self._failures_in_a_row += 1
            for job in jobs:
                fail(job.future, exc)
            return []
        del exc  # nothing of the failed attempt stays referenced from here on
        self._on_exhausted()
        if len(jobs) > 1:
            half = len(jobs) // 2
            log.warning("out of memory at batch %d; retrying in halves", len(jobs))
            return [jobs[:half], jobs[half:]]
        for job in jobs:
            fail(job.future, self._exhausted_error())
        return []
