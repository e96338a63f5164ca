"""The decode pool: ``SIMSCORE_DECODE_THREADS`` threads that take the requests in flight in turn.

Each request has a lane; a free thread takes the next item of the lane after the one it served
last, so a request with many uploads (a ``/compare/batch`` of 64 candidates) holds a small
request behind at most one of its decodes per thread, not all of them. An item not started when
its future is cancelled (its request answered, or its client gone) never runs; one already
running finishes (screening bounds how long: docs/security.md).

The threads start with the first item, and are daemon threads: the process's exit does not wait
for a decode whose request was already answered (a drain waits for the requests themselves).
"""

from __future__ import annotations

import concurrent.futures
import threading
from collections import OrderedDict, deque
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from typing import Any


@dataclass
class _Work:
    fn: Callable[..., Any]
    args: tuple[object, ...]
    future: concurrent.futures.Future[Any]


class FairPool:
    """A thread pool that serves its lanes round robin (module docstring)."""

    def __init__(self, threads: int, name: str) -> None:
        self._lanes: OrderedDict[Hashable, deque[_Work]] = OrderedDict()
        self._cond = threading.Condition()
        self._stopping = False
        self._threads = [
            threading.Thread(target=self._run, name=f"{name}_{i}", daemon=True)
            for i in range(threads)
        ]
        self._started = False

    @property
    def pending(self) -> int:
        """Items waiting for a thread (cancelled ones too, until a thread passes them)."""
        with self._cond:
            return sum(len(queue) for queue in self._lanes.values())

    def submit(
        self, lane: Hashable, fn: Callable[..., Any], *args: object
    ) -> concurrent.futures.Future[Any]:
        """Run ``fn(*args)`` in its turn among ``lane``'s items; its future."""
        future: concurrent.futures.Future[Any] = concurrent.futures.Future()
        with self._cond:
            if self._stopping:
                raise RuntimeError("the decode pool is shut down")
            self._lanes.setdefault(lane, deque()).append(_Work(fn, args, future))
            self._cond.notify()
            if not self._started:
                self._started = True
                for thread in self._threads:
                    thread.start()
        return future

    def shutdown(self) -> None:
        """Cancel what has not started; threads finish what they run, then exit."""
        with self._cond:
            self._stopping = True
            for queue in self._lanes.values():
                for work in queue:
                    work.future.cancel()
            self._lanes.clear()
            self._cond.notify_all()

    def _next(self) -> _Work | None:
        with self._cond:
            while not self._lanes:
                if self._stopping:
                    return None
                self._cond.wait()
            lane, queue = self._lanes.popitem(last=False)
            work = queue.popleft()
            if queue:
                self._lanes[lane] = queue  # to the back of the line
            return work

    def _run(self) -> None:
        while (work := self._next()) is not None:
            if not work.future.set_running_or_notify_cancel():
                continue  # its request was answered or abandoned before it started
            try:
                work.future.set_result(work.fn(*work.args))
            except BaseException as exc:  # the caller's await raises it
                work.future.set_exception(exc)
            del work
