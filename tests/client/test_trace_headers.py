"""The client carries the caller's trace: ``trace_headers`` asked afresh for every request (a
retry included), never overriding the API key; ``current_trace_headers`` writes the current
OpenTelemetry span's ``traceparent``; ``fixed_trace_headers`` checks the one it is given."""

from __future__ import annotations

import itertools

import httpx
import pytest
from opentelemetry.sdk.trace import TracerProvider
from simscore_client import AsyncSimscoreClient, SimscoreClient
from simscore_client.tracing import current_trace_headers, fixed_trace_headers

from tests.client.test_client import OK_BODY, Script, busy

TRACEPARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


def test_every_request_and_retry_asks_for_the_current_trace() -> None:
    script = Script([busy(503, "0"), (200, {}, OK_BODY)])
    spans = itertools.count()

    def headers() -> dict[str, str]:
        return {"traceparent": f"00-{'1' * 32}-{next(spans):016x}-01", "authorization": "no"}

    http = httpx.Client(transport=httpx.MockTransport(script))
    client = SimscoreClient(
        "http://simscore.test", api_key="k" * 16, http_client=http, trace_headers=headers
    )
    client.compare(b"ref", b"cand")
    sent = [request.headers for request in script.requests]
    assert [h["traceparent"][-19:-3] for h in sent] == [f"{0:016x}", f"{1:016x}"]
    assert {h["authorization"] for h in sent} == {f"Bearer {'k' * 16}"}


async def test_the_async_client_sends_them_too() -> None:
    script = Script([(200, {}, OK_BODY)])
    http = httpx.AsyncClient(transport=httpx.MockTransport(script))
    async with AsyncSimscoreClient(
        "http://simscore.test",
        http_client=http,
        trace_headers=lambda: fixed_trace_headers(TRACEPARENT, "vendor=1"),
    ) as client:
        await client.compare(b"ref", b"cand")
    await http.aclose()
    (request,) = script.requests
    assert request.headers["traceparent"] == TRACEPARENT
    assert request.headers["tracestate"] == "vendor=1"


def test_without_a_hook_no_trace_header_is_sent() -> None:
    script = Script([(200, {}, OK_BODY)])
    client = SimscoreClient(
        "http://simscore.test", http_client=httpx.Client(transport=httpx.MockTransport(script))
    )
    client.compare(b"ref", b"cand")
    assert "traceparent" not in script.requests[0].headers


def test_the_current_opentelemetry_span_is_what_is_sent() -> None:
    tracer = TracerProvider(shutdown_on_exit=False).get_tracer("caller")
    assert current_trace_headers() == {}
    with tracer.start_as_current_span("render job") as span:
        context = span.get_span_context()
        headers = current_trace_headers()
    expected = f"00-{context.trace_id:032x}-{context.span_id:016x}-{context.trace_flags:02x}"
    assert headers["traceparent"] == expected


@pytest.mark.parametrize(
    "bad",
    ["", "00-xyz", "00-0AF7651916CD43DD8448EB211C80319C-B7AD6B7169203331-01", TRACEPARENT + "-"],
)
def test_a_malformed_traceparent_is_refused(bad: str) -> None:
    with pytest.raises(ValueError, match="not a W3C traceparent"):
        fixed_trace_headers(bad)
