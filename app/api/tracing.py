"""The HTTP side of tracing: a server span per request, continuing the caller's W3C
``traceparent`` / ``tracestate`` (OpenTelemetry's FastAPI instrumentation: the route as its
name, the standard HTTP attributes, status ERROR for a 5xx), and the app's ``Tracing`` for the
routes' own spans (reading the body).

The probes and ``/metrics`` are not traced unless ``OTEL_PYTHON_FASTAPI_EXCLUDED_URLS`` (or
``OTEL_PYTHON_EXCLUDED_URLS``) says otherwise; the instrumentation's per-message ``http send``
and ``http receive`` spans are left out (a body of many chunks would make one span per chunk:
the ``read`` span covers the body).
"""

from __future__ import annotations

import os

from fastapi import FastAPI
from opentelemetry.metrics import NoOpMeterProvider
from starlette.requests import Request

from app.tracing import Tracing

UNTRACED_PATHS = "/healthz$,/readyz$,/metrics$"
EXCLUDED_URLS_VARIABLES = ("OTEL_PYTHON_FASTAPI_EXCLUDED_URLS", "OTEL_PYTHON_EXCLUDED_URLS")


def instrument(app: FastAPI, tracing: Tracing) -> None:
    """Give every request a server span (when tracing is on)."""
    if not tracing.enabled:
        return
    from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor

    excluded = None if any(os.environ.get(v) for v in EXCLUDED_URLS_VARIABLES) else UNTRACED_PATHS
    FastAPIInstrumentor.instrument_app(
        app,
        tracer_provider=tracing.provider,
        meter_provider=NoOpMeterProvider(),  # metrics are Prometheus's (GET /metrics)
        excluded_urls=excluded,
        exclude_spans=["receive", "send"],
    )


def tracing_of(request: Request) -> Tracing:
    """The app's ``Tracing`` (off for an app built without one)."""
    found = getattr(request.app.state, "tracing", None)
    return found if isinstance(found, Tracing) else _OFF


_OFF = Tracing()
