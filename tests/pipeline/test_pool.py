"""app.pipeline.pool: the decode pool serves the requests in flight in turn, never runs what
was cancelled before it started, and shuts down without starting anything new."""

from __future__ import annotations

import threading

import pytest

from app.pipeline.pool import FairPool


class Gate:
    """Work items that record their order; the first one can be held."""

    def __init__(self) -> None:
        self.order: list[str] = []
        self.entered = threading.Event()
        self.release = threading.Event()

    def held(self, name: str) -> str:
        self.order.append(name)
        self.entered.set()
        self.release.wait(10)
        return name

    def quick(self, name: str) -> str:
        self.order.append(name)
        return name


def test_lanes_take_turns() -> None:
    """A large request's decodes (lane a) do not hold a later small one (lane b) behind all of
    them: b goes after the a item next in line."""
    gate, pool = Gate(), FairPool(1, "test-pool")
    first = pool.submit("a", gate.held, "a1")
    assert gate.entered.wait(10)
    rest = [pool.submit("a", gate.quick, f"a{i}") for i in range(2, 6)]
    small = pool.submit("b", gate.quick, "b1")
    gate.release.set()
    assert [f.result(10) for f in (first, *rest, small)] == ["a1", "a2", "a3", "a4", "a5", "b1"]
    assert gate.order == ["a1", "a2", "b1", "a3", "a4", "a5"]
    pool.shutdown()


def test_cancelled_work_never_runs_and_errors_reach_the_caller() -> None:
    gate, pool = Gate(), FairPool(1, "test-pool")
    pool.submit("a", gate.held, "a1")
    assert gate.entered.wait(10)
    dropped = pool.submit("b", gate.quick, "b1")
    failing = pool.submit("c", lambda: 1 / 0)
    assert dropped.cancel()
    gate.release.set()
    with pytest.raises(ZeroDivisionError):
        failing.result(10)
    assert gate.order == ["a1"]
    assert pool.pending == 0
    pool.shutdown()


def test_shutdown_cancels_what_has_not_started() -> None:
    gate, pool = Gate(), FairPool(1, "test-pool")
    running = pool.submit("a", gate.held, "a1")
    assert gate.entered.wait(10)
    waiting = pool.submit("a", gate.quick, "a2")
    pool.shutdown()
    gate.release.set()
    assert running.result(10) == "a1"
    assert waiting.cancelled()
    with pytest.raises(RuntimeError, match="shut down"):
        pool.submit("a", gate.quick, "a3")
    assert gate.order == ["a1"]
