"""The dynamic batcher: a bounded queue in front of one worker thread.

Items enter from the event loop (``submit``/``submit_many``) and wait on futures. When the
worker is free it takes the oldest item and every queued item with the same group key, up to
``max_batch_size`` items whose ``cost`` adds up to at most ``max_batch_cost`` (an item costlier
than that goes alone), waiting at most ``max_wait_s`` for more. Other groups wait for their own
batch; the oldest item goes next, except that the group just served yields to the next oldest,
so none starves, a large request cannot hold up another group for more than one of its batches,
and no batch mixes groups. Cancelled and expired items are dropped before compute.

The batcher knows nothing of what it batches: it calls ``handler(items) -> results`` and reports
through a ``BatchObserver``. With a ``launcher`` instead (``launcher(items) -> collect``, where
``collect()`` returns the results), a batch is started, and while it runs on its device the next
batch, if one is already full, is started too, before the first is collected: on a GPU the next
batch's host copy and transfer overlap the current batch's compute. Only a full batch is started
early, so batches form as without a launcher until the queue holds more than one can take.
Failures stay with their batch; out of memory is retried in halves (``attempts``). A
``BatchTracer`` is told when each run of a batch starts and ends, with the opaque per-item
contexts the submitters attached (``submit_many(..., contexts=...)``), so tracing hangs on the
batcher without the batcher knowing of it.

``call(fn)`` runs any function on the worker thread (warm-up: per-thread device handles are
then created where the batches run).

Modules: ``jobs`` (what is passed around), ``queue`` (grouping and taking batches),
``attempts`` (running one batch, recovery, health), ``batcher`` (the thread and the API).
"""

from app.batching.batcher import Batcher
from app.batching.jobs import BatchObserver, BatchTracer, Launcher, Outcome

__all__ = ["BatchObserver", "BatchTracer", "Batcher", "Launcher", "Outcome"]
