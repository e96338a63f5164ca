"""Sending the caller's trace to simscore, so the server's spans join it (W3C trace context).

With OpenTelemetry in the calling program::

    from simscore_client import SimscoreClient
    from simscore_client.tracing import current_trace_headers

    with SimscoreClient(url, trace_headers=current_trace_headers) as client:
        client.compare("golden.png", "render.png")  # a child of the caller's current span

Without it, any function returning the headers does: ``trace_headers=lambda: {"traceparent":
"00-<trace id>-<span id>-01"}``. The client itself needs no OpenTelemetry package.
"""

from __future__ import annotations

import re

TRACEPARENT = re.compile(r"^[0-9a-f]{2}-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}$")


def current_trace_headers() -> dict[str, str]:
    """``traceparent`` (and ``tracestate``, ``baggage``) of the current OpenTelemetry context,
    as its propagators write them; empty when opentelemetry-api is not installed or no span is
    current."""
    try:
        from opentelemetry.propagate import inject
    except ImportError:
        return {}
    carrier: dict[str, str] = {}
    inject(carrier)
    return carrier


def fixed_trace_headers(traceparent: str, tracestate: str | None = None) -> dict[str, str]:
    """The headers for a ``traceparent`` you hold (checked: version-traceid-spanid-flags in
    lowercase hex, as W3C Trace Context writes it)."""
    if not TRACEPARENT.match(traceparent):
        raise ValueError(f"not a W3C traceparent: {traceparent!r}")
    headers = {"traceparent": traceparent}
    if tracestate:
        headers["tracestate"] = tracestate
    return headers
