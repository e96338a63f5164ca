"""The service's state, with one owner: loading, ready, draining, stopped; the request slots; the
memory uploads may hold.

* ``start`` (the lifespan): load and place the model off the event loop, start the batch worker,
  warm up on the worker's thread, then admit. A start-up failure is logged as one line.
* ``admit``: a request holds one of ``SIMSCORE_MAX_CONCURRENT_REQUESTS`` slots from before its
  body is read until it is answered (429 beyond them, 503 while loading or draining). Its
  deadline (``SIMSCORE_REQUEST_TIMEOUT_S``) starts there.
* ``start_draining`` (the first SIGTERM): new requests get 503, ``/readyz`` 503; requests
  already admitted go on to their real answer. ``stop`` waits for them (up to
  ``SIMSCORE_DRAIN_TIMEOUT_S``), then stops the worker.
* A sticky device error (``app.pipeline.scoring``): from then on new requests get 503,
  ``/readyz`` and ``/healthz`` 503, and the callbacks given to ``when_fatal`` run (the server then
  shuts down and the process exits non-zero, so that the orchestrator restarts it).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Literal

from app.budgets import Budget, UploadBytes
from app.config import Settings
from app.errors import DeviceFailed, NotReady, Overloaded, SimscoreError
from app.observability import Metrics
from app.pipeline import ComparePipeline
from app.scoring import build_scorer
from app.tracing import Tracing

log = logging.getLogger(__name__)

Phase = Literal["loading", "ready", "draining", "stopped", "failed", "device_failed"]


@dataclass
class Admission:
    """One admitted request: its pipeline, deadline, pixel budget and upload bytes held."""

    pipeline: ComparePipeline
    deadline: float
    pixels: Budget
    uploads: Budget
    held_bytes: int = field(default=0)

    def hold(self, nbytes: int) -> None:
        """Account for ``nbytes`` more of this request's upload (429 past the shared budget)."""
        self.uploads.take(nbytes)
        self.held_bytes += nbytes

    @property
    def remaining_s(self) -> float:
        return max(0.0, self.deadline - time.monotonic())


class Service:
    """See the module docstring."""

    def __init__(
        self, settings: Settings, metrics: Metrics, tracing: Tracing | None = None
    ) -> None:
        self.settings = settings
        self.metrics = metrics
        self.tracing = tracing or Tracing()
        self.pipeline: ComparePipeline | None = None
        self.phase: Phase = "loading"
        self.drained_cleanly = True
        self.uploads = UploadBytes(settings.upload_memory_bytes)
        self.device_failure: DeviceFailed | None = None
        self._in_flight = 0
        self._on_fatal: list[Callable[[], None]] = []
        self._loop: asyncio.AbstractEventLoop | None = None

    @property
    def startup_failed(self) -> bool:
        return self.phase == "failed"

    @property
    def fatal(self) -> bool:
        """Whether the device failed (the process must exit to recover)."""
        return self.device_failure is not None

    def when_fatal(self, callback: Callable[[], None]) -> None:
        """Run ``callback`` (on the event loop) once the device has failed."""
        self._on_fatal.append(callback)

    @property
    def in_flight(self) -> int:
        return self._in_flight

    async def start(self) -> None:
        """Load, start the worker, warm up, then admit (see the module docstring)."""
        self.phase = "loading"
        self.drained_cleanly = True
        self._loop = asyncio.get_running_loop()
        try:
            scorer, model = await asyncio.to_thread(build_scorer, self.settings, self.metrics)
            pipeline = ComparePipeline.build(
                self.settings,
                scorer,
                model,
                self.metrics,
                self._device_failed_elsewhere,
                tracing=self.tracing,
            )
            pipeline.start()
            self.pipeline = pipeline
            log.info(
                "warming up %s at batch %d",
                self.settings.warmup_sides,
                self.settings.max_batch_size,
            )
            await pipeline.warm_up()
        except SimscoreError as exc:
            self.phase = "failed"
            log.error("start-up failed: %s", exc)
            raise
        self.phase = "ready"
        self.metrics.ready.set(1)
        log.info("simscore ready")

    def _device_failed_elsewhere(self, failure: DeviceFailed) -> None:
        """From the batch worker's thread: hand the failure to the event loop."""
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self.device_failed, failure)

    def device_failed(self, failure: DeviceFailed) -> None:
        """Stop admitting, fail /healthz and /readyz, and ask for the process to exit."""
        if self.device_failure is not None:
            return
        self.device_failure = failure
        if self.phase in ("loading", "ready"):
            self.phase = "device_failed"
        self.metrics.ready.set(0)
        log.error("%s; /healthz answers 503 and the server shuts down (exit code 4)", failure)
        for callback in self._on_fatal:
            callback()

    def start_draining(self) -> None:
        """Stop admitting: /readyz and new requests answer 503 from now on."""
        if self.phase in ("loading", "ready"):
            self.phase = "draining"
        self.metrics.ready.set(0)

    async def stop(self) -> None:
        """Drain what was admitted (up to ``SIMSCORE_DRAIN_TIMEOUT_S``), then stop the worker."""
        self.start_draining()
        deadline = time.monotonic() + self.settings.drain_timeout_s
        while self._in_flight and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        self.drained_cleanly = self._in_flight == 0
        if not self.drained_cleanly:
            log.warning(
                "drain timed out after %.1f s with %d requests in flight",
                self.settings.drain_timeout_s,
                self._in_flight,
            )
        if self.pipeline is not None:
            self.pipeline.close()
        self.phase = "stopped"
        log.info("simscore stopped")

    @contextlib.contextmanager
    def admit(self) -> Iterator[Admission]:
        """Hold a request slot until the block ends (event loop only)."""
        if self.device_failure is not None:
            raise DeviceFailed(str(self.device_failure))
        if self.phase != "ready" or self.pipeline is None:
            raise NotReady(
                "the server is shutting down; retry on another replica"
                if self.phase in ("draining", "stopped")
                else "the model is still loading; retry shortly"
            )
        if self._in_flight >= self.settings.max_concurrent_requests:
            raise Overloaded(
                f"{self._in_flight} requests are already in flight "
                "(SIMSCORE_MAX_CONCURRENT_REQUESTS); retry after a short wait"
            )
        admission = Admission(
            pipeline=self.pipeline,
            deadline=time.monotonic() + self.settings.request_timeout_s,
            pixels=self.pipeline.pixel_budget(),
            uploads=self.uploads,
        )
        self._in_flight += 1
        try:
            yield admission
        finally:
            self._in_flight -= 1
            self.uploads.give_back(admission.held_bytes)

    def health(self) -> str | None:
        """Why the process is not healthy (restart it), or None."""
        if self.device_failure is not None:
            return str(self.device_failure)
        if self.pipeline is None:
            return None
        if not self.pipeline.queue.alive:
            return "the batch worker died"
        if not self.pipeline.queue.healthy:
            return (
                f"{self.settings.unhealthy_after_failures} batches failed in a row "
                "(SIMSCORE_UNHEALTHY_AFTER_FAILURES): the device may be in an error state"
            )
        return None
