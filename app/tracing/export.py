"""The OpenTelemetry SDK pipeline spans leave by, built only when tracing is on (importing this
module imports the SDK).

One ``TracerProvider`` per app (tests build several apps in one process; nothing global is
set), its resource from ``OTEL_SERVICE_NAME`` / ``OTEL_RESOURCE_ATTRIBUTES`` (``simscore`` and
its version where they say nothing), its sampler from ``OTEL_TRACES_SAMPLER[_ARG]``. Each
exporter sits behind the SDK's ``BatchSpanProcessor`` (``OTEL_BSP_*``), which exports on its
own thread: ending a span on a request's path is a bounded append, whatever the collector
does. A span that cannot be exported is dropped and counted (``Dropped``), never waited for:
``queue_full`` when the processor's queue (``OTEL_BSP_MAX_QUEUE_SIZE``) is full because the
collector is slow or down, ``export_failed`` when the exporter gave up on a batch.
"""

from __future__ import annotations

import importlib
import logging
import os
import threading
from collections.abc import Callable, Sequence

from opentelemetry.context import Context
from opentelemetry.sdk.resources import (
    SERVICE_NAME,
    SERVICE_VERSION,
    OTELResourceDetector,
    Resource,
)
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    ConsoleSpanExporter,
    SpanExporter,
    SpanExportResult,
)

from app import __version__
from app.tracing.config import TraceExport, TracingConfigError

log = logging.getLogger(__name__)

Dropped = Callable[[int, str], None]  # (spans, reason)
DEFAULT_MAX_QUEUE_SIZE = 2048  # the specification's default for OTEL_BSP_MAX_QUEUE_SIZE
GRPC_EXPORTER = "opentelemetry.exporter.otlp.proto.grpc.trace_exporter"


def build_provider(export: TraceExport, dropped: Dropped) -> TracerProvider:
    """A tracer provider exporting as ``export`` says; raises ``TracingConfigError`` when an
    exporter it names is not installed."""
    exporters = [_exporter(name, export.protocol) for name in export.exporters]
    # No atexit hook: the app shuts tracing down itself, within a bound (Tracing.shutdown).
    provider = TracerProvider(resource=resource(), shutdown_on_exit=False)
    for exporter in exporters:
        provider.add_span_processor(CountedBatchProcessor(exporter, dropped))
    return provider


def resource() -> Resource:
    """The SDK's resource from the environment, with simscore's name and version where the
    environment gives none."""
    given = OTELResourceDetector().detect().attributes
    defaults = {SERVICE_NAME: "simscore", SERVICE_VERSION: __version__}
    return Resource.create({k: v for k, v in defaults.items() if k not in given})


def _exporter(name: str, protocol: str) -> SpanExporter:
    if name == "console":
        return ConsoleSpanExporter()
    if protocol == "grpc":
        try:
            module = importlib.import_module(GRPC_EXPORTER)
        except ImportError as exc:
            raise TracingConfigError(
                "OTEL_EXPORTER_OTLP_PROTOCOL=grpc needs opentelemetry-exporter-otlp-proto-grpc "
                "(pip install 'simscore[tracing-grpc]'), or use http/protobuf"
            ) from exc
        grpc_exporter: SpanExporter = module.OTLPSpanExporter()
        return grpc_exporter
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    return OTLPSpanExporter()  # endpoint, headers, timeout, compression: OTEL_EXPORTER_OTLP_*


def max_queue_size(env: dict[str, str] | os._Environ[str] = os.environ) -> int:
    """``OTEL_BSP_MAX_QUEUE_SIZE`` as the SDK reads it (a positive integer, else the default)."""
    value = env.get("OTEL_BSP_MAX_QUEUE_SIZE", "").strip()
    try:
        size = int(value) if value else DEFAULT_MAX_QUEUE_SIZE
    except ValueError:
        size = DEFAULT_MAX_QUEUE_SIZE
    return size if size > 0 else DEFAULT_MAX_QUEUE_SIZE


class CountedBatchProcessor(SpanProcessor):
    """The SDK's ``BatchSpanProcessor`` with its drops counted.

    The SDK drops a span silently when its queue is full. So this processor keeps its own count
    of the spans handed over and not yet taken by the exporter, and refuses (counting it) a
    span that would not fit: the SDK's queue, of the same size, never overflows itself."""

    def __init__(self, exporter: SpanExporter, dropped: Dropped) -> None:
        self._capacity = max_queue_size()
        self._pending = 0  # handed to the SDK's queue, not yet taken by the exporter
        self._lock = threading.Lock()
        self._dropped = dropped
        self._inner = BatchSpanProcessor(
            _CountingExporter(exporter, self), max_queue_size=self._capacity
        )

    def on_start(self, span: Span, parent_context: Context | None = None) -> None:
        self._inner.on_start(span, parent_context)

    def on_end(self, span: ReadableSpan) -> None:
        if not (span.context and span.context.trace_flags.sampled):
            return  # what the SDK's processor does with unsampled spans
        with self._lock:
            full = self._pending >= self._capacity
            if not full:
                self._pending += 1
        if full:
            self.drop(1, "queue_full")
            return
        self._inner.on_end(span)

    def taken(self, spans: int) -> None:
        """The exporter took ``spans`` off the queue."""
        with self._lock:
            self._pending = max(0, self._pending - spans)

    def drop(self, spans: int, reason: str) -> None:
        """Count spans dropped (a counter must not break the export thread or a request)."""
        try:
            self._dropped(spans, reason)
        except Exception:
            log.exception("tracing: counting dropped spans failed")

    def shutdown(self) -> None:
        self._inner.shutdown()  # type: ignore[no-untyped-call]

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return self._inner.force_flush(timeout_millis)


class _CountingExporter(SpanExporter):
    """An exporter that tells its processor what it took and counts what it could not export."""

    def __init__(self, inner: SpanExporter, processor: CountedBatchProcessor) -> None:
        self._inner = inner
        self._processor = processor

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        self._processor.taken(len(spans))
        try:
            result = self._inner.export(spans)
        except Exception:
            log.exception("tracing: the span exporter failed")
            result = SpanExportResult.FAILURE
        if result is not SpanExportResult.SUCCESS:
            self._processor.drop(len(spans), "export_failed")
        return result

    def shutdown(self) -> None:
        self._inner.shutdown()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return self._inner.force_flush(timeout_millis)
