"""``Tracing``: one app's tracer, and the helpers every stage uses to make its spans.

Off (no OpenTelemetry variable asks for tracing), ``span`` hands back one shared no-op context
and nothing else runs: no SDK import, no provider, no thread. On, spans come from the app's own
provider (``app.tracing.export``). A failed stage marks its span: status ERROR with the
exception's message, ``error.type`` (the exception's class) and the exception as an event.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
from collections.abc import Iterator, Mapping
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING

from opentelemetry import propagate, trace
from opentelemetry.context import Context
from opentelemetry.trace import Span, Status, StatusCode
from opentelemetry.util.types import Attributes

from app import __version__
from app.tracing.config import trace_export

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import TracerProvider

    from app.tracing.export import Dropped

log = logging.getLogger(__name__)

SHUTDOWN_S = 5.0  # at most this long to export what is queued when the app stops
_NO_SPAN: AbstractContextManager[Span] = contextlib.nullcontext(trace.INVALID_SPAN)


class Tracing:
    """One app's tracer (see the module docstring); ``Tracing()`` is off."""

    def __init__(self, provider: TracerProvider | None = None, description: str = "off") -> None:
        self.provider = provider
        self.enabled = provider is not None
        self.description = description
        self.tracer: trace.Tracer = (
            provider.get_tracer("simscore", __version__) if provider else trace.NoOpTracer()
        )

    @classmethod
    def from_environment(cls, dropped: Dropped | None = None) -> Tracing:
        """Tracing as the OpenTelemetry variables ask (``app.tracing.config``); ``dropped`` counts
        spans that could not be exported. A configuration simscore cannot honour is logged and
        leaves tracing off: like OpenTelemetry itself, tracing never stops the service."""
        try:
            export = trace_export(os.environ)
            if export is None:
                return cls()
            from app.tracing.export import build_provider

            provider = build_provider(export, dropped or _uncounted)
        except Exception as exc:
            log.error("tracing is off: %s", exc)
            return cls()
        description = export.describe()
        log.info("tracing on: spans exported with %s", description)
        return cls(provider, description)

    def span(
        self, name: str, attributes: Attributes = None, *, context: Context | None = None
    ) -> AbstractContextManager[Span]:
        """A span around a block, the current span inside it, marked if the block raises; a
        child of the current span, or of the span ``context`` holds (``continued``)."""
        if not self.enabled:
            return _NO_SPAN
        return _recorded(self.tracer, name, attributes, context)

    def shutdown(self, timeout_s: float = SHUTDOWN_S) -> None:
        """Export what is queued and stop the exporter thread, waiting at most ``timeout_s``
        (a collector that is down must not hold the process's exit)."""
        if self.provider is None:
            return
        provider, self.provider = self.provider, None
        closing = threading.Thread(target=provider.shutdown, name="simscore-tracing-shutdown")
        closing.daemon = True
        closing.start()
        closing.join(timeout_s)
        if closing.is_alive():
            log.warning(
                "tracing: spans not exported within %.0f s of shutdown were dropped", timeout_s
            )


@contextlib.contextmanager
def _recorded(
    tracer: trace.Tracer, name: str, attributes: Attributes, context: Context | None
) -> Iterator[Span]:
    with tracer.start_as_current_span(
        name,
        context=context,
        attributes=attributes,
        record_exception=False,
        set_status_on_exception=False,
    ) as span:
        try:
            yield span
        except BaseException as exc:
            mark_error(span, exc)
            raise


def error_type(exc: BaseException) -> str:
    """``error.type`` of an exception: its class, with its module unless a builtin."""
    kind = type(exc)
    if kind.__module__ == "builtins":
        return kind.__qualname__
    return f"{kind.__module__}.{kind.__qualname__}"


def mark_error(span: Span, exc: BaseException) -> None:
    """Status ERROR with the message, ``error.type``, and the exception as an event."""
    if not span.is_recording():
        return
    span.set_status(Status(StatusCode.ERROR, f"{type(exc).__name__}: {exc}"))
    span.set_attribute("error.type", error_type(exc))
    span.record_exception(exc, escaped=True)


def note_error(exc: BaseException) -> None:
    """``error.type`` on the current span (a request's server span, answered with an error
    status: its status itself follows the HTTP conventions: ERROR for 5xx, unset for 4xx)."""
    span = trace.get_current_span()
    if span.is_recording():
        span.set_attribute("error.type", error_type(exc))


def current_ids() -> tuple[str, str] | None:
    """The current span's trace id and span id in hex (32 and 16 digits), if there is one."""
    context = trace.get_current_span().get_span_context()
    if not context.is_valid:
        return None
    return format(context.trace_id, "032x"), format(context.span_id, "016x")


def continued(carrier: Mapping[str, str | None]) -> Context:
    """The context a W3C ``traceparent`` (and ``tracestate``) in ``carrier`` continues (the
    propagators of ``OTEL_PROPAGATORS``, W3C trace context by default)."""
    return propagate.extract({k.lower(): v for k, v in carrier.items() if v})


def _uncounted(spans: int, reason: str) -> None:
    log.debug("tracing: %d spans dropped (%s)", spans, reason)
