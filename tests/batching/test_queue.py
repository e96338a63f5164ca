"""The batcher's queue (``app.batching.queue``), through the batcher: grouping by key, the
oldest first, a bounded queue, and what closing does to what still waits."""

from __future__ import annotations

import asyncio
import threading

import pytest

from app.errors import NotReady, Overloaded
from tests.batching.support import (
    Recorder,
    far,
    make,
    until,
)


async def test_concurrent_items_of_one_key_share_a_batch() -> None:
    handler = Recorder()
    batcher = make(handler)
    outs = await asyncio.gather(*(batcher.submit(("a", i), deadline=far()) for i in range(4)))
    assert [o.value for o in outs] == [0, 10, 20, 30]
    assert [len(b) for b in handler.batches] == [4]
    assert all(o.batch_size == 4 for o in outs)
    batcher.close()


async def test_keys_are_never_mixed_and_the_oldest_goes_first() -> None:
    handler = Recorder()
    handler.gate.clear()
    batcher = make(handler, max_batch_size=8, max_wait_s=0)
    first = asyncio.ensure_future(batcher.submit(("a", 0), deadline=far()))
    await asyncio.sleep(0.05)  # the worker now holds batch [a0] at the gate
    waits = [
        asyncio.ensure_future(batcher.submit((key, i), deadline=far()))
        for i, key in enumerate(["b", "a", "b", "c", "a"], start=1)
    ]
    await asyncio.sleep(0.05)
    handler.gate.set()
    await asyncio.gather(first, *waits)
    keys = [{k for k, _ in batch} for batch in handler.batches]
    assert all(len(k) == 1 for k in keys)
    assert [next(iter(k)) for k in keys] == ["a", "b", "a", "c"]  # by age of each batch's oldest
    batcher.close()


async def test_a_batch_stays_within_the_cost_budget() -> None:
    """Items of cost ``value``: a batch adds up to at most 10; one over 10 goes alone."""
    handler = Recorder()
    handler.gate.clear()
    batcher = make(
        handler, max_batch_size=8, max_wait_s=0.05, cost=lambda item: item[1], max_batch_cost=10
    )
    held = asyncio.ensure_future(batcher.submit(("a", 1), deadline=far()))
    await until(lambda: batcher.depth == 1 and batcher._queue.queued == 0)  # taken, held
    costs = [4, 4, 4, 12, 3, 3, 3, 1]
    waits = batcher.submit_many([("a", c) for c in costs], deadline=far())
    handler.gate.set()
    await asyncio.gather(held, *waits)
    assert [[c for _, c in batch] for batch in handler.batches] == [
        [1],
        [4, 4],
        [4],
        [12],
        [3, 3, 3, 1],
    ]
    batcher.close()


async def test_a_batch_full_by_cost_does_not_wait_to_fill() -> None:
    handler = Recorder()
    batcher = make(
        handler, max_batch_size=8, max_wait_s=30, cost=lambda item: item[1], max_batch_cost=10
    )
    out = await asyncio.wait_for(batcher.submit(("a", 10), deadline=far()), 5)
    assert out.batch_size == 1
    alone = await asyncio.wait_for(batcher.submit(("a", 25), deadline=far()), 5)
    assert alone.value == 250
    batcher.close()


async def test_the_group_just_served_yields_to_another() -> None:
    """A large request split into batches of one (by cost) does not hold up a later request of
    another key for more than one of its batches."""
    handler = Recorder()
    handler.gate.clear()
    batcher = make(handler, max_batch_size=4, max_wait_s=0, cost=lambda item: 1, max_batch_cost=1)
    large = batcher.submit_many([("big", i) for i in range(5)], deadline=far())
    await until(lambda: batcher.depth == 5 and batcher._queue.queued == 4)
    small = asyncio.ensure_future(batcher.submit(("small", 99), deadline=far()))
    await until(lambda: batcher._queue.queued == 5)
    handler.gate.set()
    await asyncio.gather(small, *large)
    keys = [batch[0][0] for batch in handler.batches]
    assert keys == ["big", "small", "big", "big", "big", "big"]
    batcher.close()


async def test_full_queue_is_rejected_with_overloaded() -> None:
    handler = Recorder()
    handler.gate.clear()
    batcher = make(handler, max_batch_size=1, max_wait_s=0, queue_size=2)
    held = asyncio.ensure_future(batcher.submit(("a", 0), deadline=far()))
    await asyncio.sleep(0.05)
    queued = [asyncio.ensure_future(batcher.submit(("a", i), deadline=far())) for i in (1, 2)]
    await asyncio.sleep(0.01)
    with pytest.raises(Overloaded, match="queue is full"):
        await batcher.submit(("a", 3), deadline=far())
    with pytest.raises(Overloaded):
        batcher.submit_many([("a", 4), ("a", 5)], deadline=far())
    handler.gate.set()
    await asyncio.gather(held, *queued)
    batcher.close()


async def test_accepts_until_closed_then_refuses() -> None:
    """Admission is the service's business: the batcher takes whatever it is given until it is
    closed, so work admitted before a shutdown is never refused here."""
    handler = Recorder(delay_s=0.02)
    batcher = make(handler, max_batch_size=2, max_wait_s=0)
    accepted = batcher.submit_many([("a", i) for i in range(5)], deadline=far())
    assert [(await a).value for a in accepted] == [0, 10, 20, 30, 40]
    await until(lambda: batcher.depth == 0)  # the worker marks a batch done just after answering
    batcher.close()
    assert not batcher.alive
    with pytest.raises(NotReady):
        await batcher.submit(("a", 9), deadline=far())


async def test_close_fails_what_is_still_queued() -> None:
    handler = Recorder()
    handler.gate.clear()
    batcher = make(handler, max_batch_size=1, max_wait_s=0)
    held = asyncio.ensure_future(batcher.submit(("a", 0), deadline=far()))
    await asyncio.sleep(0.05)
    queued = asyncio.ensure_future(batcher.submit(("a", 1), deadline=far()))
    await asyncio.sleep(0.01)
    closer = threading.Thread(target=batcher.close)
    closer.start()
    with pytest.raises(NotReady):
        await queued
    handler.gate.set()
    await held
    closer.join()
