"""The batcher's queue: jobs grouped by key and taken a batch at a time, and the functions to run
on the worker thread between batches. Thread-safe; runs nothing itself.

A batch is at most ``max_batch_size`` jobs of one key whose costs add up to at most
``max_batch_cost`` (a job costlier than that on its own goes alone). The group whose oldest job
is the oldest goes next, except that the group just served yields to the next oldest one: a
large request split into many batches cannot hold a request of another shape for more than one
of its batches, and every group is still served in turn.
"""

from __future__ import annotations

import concurrent.futures
import threading
import time
from collections import deque
from collections.abc import Callable, Hashable
from typing import Any, Generic, TypeAlias

from app.batching.jobs import In, Job, Out
from app.errors import NotReady, Overloaded

# A function to run on the worker thread, and the future of its result.
Call: TypeAlias = "tuple[Callable[[], Any], concurrent.futures.Future[Any]]"


class WorkQueue(Generic[In, Out]):
    """At most ``queue_size`` jobs waiting; batches of at most ``max_batch_size`` of one key and
    ``max_batch_cost`` in all (module docstring)."""

    def __init__(
        self,
        *,
        max_batch_size: int,
        max_wait_s: float,
        queue_size: int,
        max_batch_cost: int | None = None,
    ) -> None:
        self.max_batch_size = max_batch_size
        self.max_wait_s = max_wait_s
        self.queue_size = queue_size
        self.max_batch_cost = max_batch_cost
        self._last_key: Hashable | None = None  # the group served last
        self._groups: dict[Hashable, deque[Job[In, Out]]] = {}
        self._calls: deque[Call] = deque()
        self._queued = 0
        self._busy = 0  # taken, not yet done
        self._stopping = False
        self._cond = threading.Condition()

    @property
    def queued(self) -> int:
        """Jobs waiting to be taken."""
        return self._queued

    @property
    def depth(self) -> int:
        """Jobs waiting or taken and not yet done."""
        with self._cond:
            return self._queued + self._busy

    def put(self, jobs: list[Job[In, Out]]) -> None:
        """Queue jobs together, all or none."""
        with self._cond:
            if self._stopping:
                raise NotReady("the batch worker has stopped")
            if self._queued + len(jobs) > self.queue_size:
                raise Overloaded(
                    f"the queue is full ({self._queued} of {self.queue_size} items waiting, "
                    f"{len(jobs)} more asked for); retry after a short wait"
                )
            for job in jobs:
                self._groups.setdefault(job.key, deque()).append(job)
            self._queued += len(jobs)
            self._cond.notify_all()

    def put_call(self, call: Call) -> None:
        with self._cond:
            if self._stopping:
                raise NotReady("the batch worker has stopped")
            self._calls.append(call)
            self._cond.notify_all()

    def next_work(self) -> list[Job[In, Out]] | Call | None:
        """Block for the next call, or the oldest group's batch once it is full or its oldest
        job has waited ``max_wait_s``; None once closed and empty."""
        with self._cond:
            while not self._groups and not self._calls:
                if self._stopping:
                    return None
                self._cond.wait()
            if self._calls:
                return self._calls.popleft()
            key, group = self._next_group()
            fill_by = group[0].enqueued_at + self.max_wait_s
            while not self._full(group) and not self._stopping:
                remaining = fill_by - time.monotonic()
                if remaining <= 0:
                    break
                self._cond.wait(remaining)
            return self._take(key, group)

    def take_full(self) -> list[Job[In, Out]] | None:
        """The next group's batch if it is full now (no waiting, no call skipped)."""
        with self._cond:
            if self._stopping or self._calls or not self._groups:
                return None
            key, group = self._next_group()
            return self._take(key, group) if self._full(group) else None

    def done(self, taken: int) -> None:
        """``taken`` jobs taken earlier are answered."""
        with self._cond:
            self._busy -= taken

    def close(self) -> list[concurrent.futures.Future[Any]]:
        """Stop taking work; returns the futures of every job and call still waiting."""
        with self._cond:
            self._stopping = True
            leftovers: list[concurrent.futures.Future[Any]] = [
                job.future for group in self._groups.values() for job in group
            ]
            leftovers += [future for _, future in self._calls]
            self._groups.clear()
            self._calls.clear()
            self._queued = 0
            self._cond.notify_all()
        return leftovers

    def _next_group(self) -> tuple[Hashable, deque[Job[In, Out]]]:
        """The oldest group, unless it was served last and another one waits."""
        by_age = sorted(self._groups.items(), key=lambda kv: kv[1][0].enqueued_at)
        if len(by_age) > 1 and by_age[0][0] == self._last_key:
            return by_age[1]
        return by_age[0]

    def _batch_length(self, group: deque[Job[In, Out]]) -> tuple[int, bool]:
        """How many of the group's first jobs make its next batch, and whether that batch is
        full (by count, or because the next job would pass the cost budget)."""
        budget = self.max_batch_cost
        length = cost = 0
        for job in group:
            if length == self.max_batch_size:
                return length, True
            if budget is not None and length and cost + job.cost > budget:
                return length, True
            length, cost = length + 1, cost + job.cost
        return length, length == self.max_batch_size or (budget is not None and cost >= budget)

    def _full(self, group: deque[Job[In, Out]]) -> bool:
        return self._batch_length(group)[1]

    def _take(self, key: Hashable, group: deque[Job[In, Out]]) -> list[Job[In, Out]]:
        length, _ = self._batch_length(group)
        jobs = [group.popleft() for _ in range(length)]
        self._last_key = key
        if not group:
            del self._groups[key]
        self._queued -= len(jobs)
        self._busy += len(jobs)
        return jobs
