"""What the pipeline reports: the batcher's events plus the device's memory after each batch
(the service wires Prometheus to it)."""

from __future__ import annotations

from typing import Protocol

from app.batching import BatchObserver
from app.scoring.device import MemoryStats


class PipelineObserver(BatchObserver, Protocol):
    """The batcher's reports plus the device's memory after each batch."""

    def device_memory(self, stats: MemoryStats) -> None: ...
