"""The batcher's worker thread (``app.batching.batcher``): calls between batches, overlap (a full
next batch started before the current one is collected) and configuration."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from app.batching import Batcher
from app.errors import NotReady
from tests.batching.support import (
    Launches,
    Recorder,
    far,
    healthy,
    make,
    overlapping,
    until,
)


async def test_call_runs_on_the_worker_thread_between_batches() -> None:
    batcher = make(Recorder())
    name = await batcher.call(lambda: threading.current_thread().name)
    assert name == "simscore-batcher"
    with pytest.raises(ZeroDivisionError):
        await batcher.call(lambda: 1 // 0)
    assert (await batcher.submit(("a", 2), deadline=far())).value == 20
    batcher.close()
    with pytest.raises(NotReady):
        await batcher.call(lambda: None)


async def test_a_full_next_batch_starts_before_the_current_one_is_collected() -> None:
    launches = Launches()
    launches.collect_s = 0.05
    batcher = overlapping(launches)
    began = time.monotonic()
    outs = await asyncio.gather(*batcher.submit_many([("a", i) for i in range(12)], deadline=far()))
    wall = time.monotonic() - began
    assert [o.value for o in outs] == [i * 10 for i in range(12)]
    assert all(o.batch_size == 4 for o in outs)
    # A batch started early counts its time from the end of the one before: batch times add up
    # to the busy time (a "busy" share from them stays at most 1), each about one collect.
    times = [outs[i].compute_s for i in (0, 4, 8)]
    assert sum(times) <= wall and all(t >= 0.05 for t in times)
    assert launches.log == [
        "start [0, 1, 2, 3]",
        "start [4, 5, 6, 7]",  # staged while the first is on the device
        "collect [0, 1, 2, 3]",
        "start [8, 9, 10, 11]",
        "collect [4, 5, 6, 7]",
        "collect [8, 9, 10, 11]",
    ]
    assert launches.threads == {"simscore-batcher"}
    await until(lambda: batcher.depth == 0)  # the worker marks a batch done just after answering
    batcher.close()


async def test_a_batch_that_is_not_full_forms_after_the_current_one_as_without_overlap() -> None:
    """Batches form as they would without overlap until the queue holds more than one: the
    items left over wait for the current batch, then for more items up to max_wait_s."""
    launches = Launches()
    launches.collecting.clear()
    batcher = overlapping(launches, max_wait_s=0.2)
    first = batcher.submit_many([("a", i) for i in range(6)], deadline=far())
    await asyncio.sleep(0.05)
    later = batcher.submit_many([("a", 6)], deadline=far())  # joins the two left over
    launches.collecting.set()
    await asyncio.gather(*first, *later)
    assert launches.log == [
        "start [0, 1, 2, 3]",
        "collect [0, 1, 2, 3]",
        "start [4, 5, 6]",
        "collect [4, 5, 6]",
    ]
    batcher.close()


async def test_overlap_out_of_memory_and_failures_stay_with_their_batch() -> None:
    """The staged batch runs out of memory when it starts: the batch on the device is collected
    first, then the staged one is retried in halves; a failure when collecting fails only its
    own batch and counts against health."""
    launches = Launches()
    launches.oom_at_start = {5}
    launches.fail_at_collect = {9}
    released: list[int] = []
    batcher = overlapping(launches, on_exhausted=lambda: released.append(1))
    outs = await asyncio.gather(
        *batcher.submit_many([("a", i) for i in range(12)], deadline=far()),
        return_exceptions=True,
    )
    values = [o if isinstance(o, BaseException) else o.value for o in outs]
    assert values[:8] == [i * 10 for i in range(8)]
    assert all(isinstance(v, RuntimeError) for v in values[8:])
    assert launches.log[:5] == [
        "start [0, 1, 2, 3]",
        "start [4, 5, 6, 7]",  # out of memory at its start
        "collect [0, 1, 2, 3]",
        "start [4, 5]",  # only then released and retried, in halves
        "start [4]",
    ]
    assert released == [1, 1]
    assert healthy(batcher)  # one failure in a row (unhealthy after 3)
    assert (await batcher.submit(("b", 1), deadline=far())).value == 10
    batcher.close()


async def test_calls_and_close_wait_for_the_batch_on_the_device() -> None:
    launches = Launches()
    launches.collecting.clear()
    batcher = overlapping(launches)
    batch = batcher.submit_many([("a", i) for i in range(4)], deadline=far())
    await until(lambda: launches.log == ["start [0, 1, 2, 3]"])
    call = asyncio.ensure_future(batcher.call(lambda: launches.log.append("call")))
    await asyncio.sleep(0.05)
    assert launches.log == ["start [0, 1, 2, 3]"]
    launches.collecting.set()
    await call
    assert launches.log == ["start [0, 1, 2, 3]", "collect [0, 1, 2, 3]", "call"]
    launches.collecting.clear()
    staged = batcher.submit_many([("a", i) for i in range(4, 8)], deadline=far())
    await until(lambda: "start [4, 5, 6, 7]" in launches.log)
    closer = threading.Thread(target=batcher.close)
    closer.start()
    launches.collecting.set()
    closer.join()
    assert [(await f).value for f in (*batch, *staged)] == [i * 10 for i in range(8)]


def test_invalid_configuration_is_refused() -> None:
    with pytest.raises(ValueError, match="max_batch_size"):
        Batcher(
            Recorder(), group_key=lambda item: item, max_batch_size=0, max_wait_s=0, queue_size=1
        )
    with pytest.raises(ValueError, match="max_batch_cost"):
        Batcher(
            Recorder(),
            group_key=lambda item: item,
            max_batch_size=1,
            max_wait_s=0,
            queue_size=1,
            max_batch_cost=0,
        )
