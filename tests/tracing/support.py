"""Exporters and providers for tracing tests: spans kept in memory, or an exporter that holds
its first export until released, or fails."""

from __future__ import annotations

import threading
from collections.abc import Sequence

from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from app.tracing import Tracing

EXPORT_THREAD = "OtelBatchSpanRecordProcessor"  # the SDK's BatchSpanProcessor thread


def export_threads() -> list[str]:
    return [t.name for t in threading.enumerate() if t.name.startswith("OtelBatch")]


def in_memory() -> tuple[Tracing, InMemorySpanExporter]:
    """A ``Tracing`` whose spans are exported, as they end, to memory."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider(shutdown_on_exit=False)
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return Tracing(provider, "memory"), exporter


class Held(SpanExporter):
    """Holds each export until ``release``; succeeds, fails or raises as told."""

    def __init__(self, result: SpanExportResult | None = SpanExportResult.SUCCESS) -> None:
        self.result = result  # None: raise
        self.entered = threading.Event()
        self.released = threading.Event()
        self.exported: list[ReadableSpan] = []

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        self.entered.set()
        self.released.wait(30)
        self.exported.extend(spans)
        if self.result is None:
            raise ConnectionError("collector gone")
        return self.result

    def shutdown(self) -> None:
        self.released.set()
