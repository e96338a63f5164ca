"""Traces of where each request's time goes, across the batch (OpenTelemetry).

``config`` decides from the standard ``OTEL_*`` variables whether tracing is on; ``export``
builds the SDK's provider and exporter when it is (imported only then); ``spans`` holds
``Tracing``, the tracer each app owns, and the helpers the stages make their spans with. The
batcher knows nothing of it: the pipeline hangs the batch's spans on the batcher's hooks
(``app.pipeline.spans``). README: Tracing.
"""

from app.tracing.config import TraceExport, TracingConfigError, trace_export
from app.tracing.spans import (
    Tracing,
    continued,
    current_ids,
    error_type,
    mark_error,
    note_error,
)

__all__ = [
    "TraceExport",
    "Tracing",
    "TracingConfigError",
    "continued",
    "current_ids",
    "error_type",
    "mark_error",
    "note_error",
    "trace_export",
]
