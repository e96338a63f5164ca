"""What the batcher passes around: a queued job, its outcome, and what the worker reports."""

from __future__ import annotations

import concurrent.futures
import time
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass, field
from typing import Generic, Protocol, TypeAlias, TypeVar

In = TypeVar("In")
In_contra = TypeVar("In_contra", contravariant=True)
Out = TypeVar("Out")
T = TypeVar("T")
# Starts a batch and returns what collects its results (blocking until they are ready).
Launcher: TypeAlias = "Callable[[Sequence[In]], Callable[[], Sequence[Out]]]"


class BatchObserver(Protocol):
    """What the batcher reports (the service wires it to Prometheus)."""

    def queue_depth(self, items: int) -> None: ...

    def queue_wait(self, seconds: float) -> None: ...

    def batch_done(self, items: int, seconds: float) -> None: ...

    def batch_failed(self, items: int, exc: BaseException, *, exhausted: bool) -> None: ...


class BatchTracer(Protocol[In_contra]):
    """Where each run of a batch is reported, with the contexts its items' submitters attached
    (``submit_many(..., contexts=...)``; opaque to the batcher; the pipeline wires tracing to it).

    ``batch_started`` is called on the worker thread just before a batch is launched and returns
    a handle; the handle comes back to ``batch_ended`` once the batch's results are collected
    (with the error when it failed) and, as ``split_of``, to the runs of its halves after an
    out-of-memory failure. Neither may keep the error: on out of memory it is what held the
    failed attempt's memory."""

    def batch_started(
        self, items: Sequence[In_contra], contexts: Sequence[object], *, split_of: object
    ) -> object: ...

    def batch_ended(self, batch: object, error: BaseException | None) -> None: ...


@dataclass(frozen=True)
class Outcome(Generic[Out]):
    """A result and how long it waited and ran."""

    value: Out
    queue_wait_s: float
    compute_s: float
    batch_size: int


@dataclass
class Job(Generic[In, Out]):
    """One queued item and the future its submitter waits on."""

    item: In
    key: Hashable
    deadline: float  # time.monotonic() seconds
    cost: int = 1  # its share of a batch's budget (``Batcher``'s ``cost``)
    enqueued_at: float = field(default_factory=time.monotonic)
    future: concurrent.futures.Future[Outcome[Out]] = field(
        default_factory=concurrent.futures.Future
    )
    context: object = None  # what its submitter attached (a ``BatchTracer`` reads it)


def fail(future: concurrent.futures.Future[T], exc: BaseException) -> None:
    """Fail ``future`` unless it is already answered (or cancelled)."""
    if not future.done():
        future.set_exception(exc)
