"""One pure-ASGI middleware: request id, security headers, access log line (with the request's
trace and span ids when it is traced), HTTP metrics, a 400 for an ambiguous body length, and a
JSON 500 for anything unhandled.

It is pure ASGI (not ``BaseHTTPMiddleware``) so uploads stream through it and a client that goes
away is still seen by the route. An answer sent before the request's body was read (a 401, 413,
429 or 503 decided from the headers) closes the connection, so the rest of the upload is never
read.

A request with both ``Content-Length`` and ``Transfer-Encoding`` is answered 400 before any
route runs, and its connection closed (RFC 9112 section 6.1: a proxy in front may have framed
its body by the other header, so what follows on the connection cannot be trusted). The other
framing errors (conflicting ``Content-Length`` values, a ``Transfer-Encoding`` other than
``chunked``) are refused by h11 itself, with 400 and a close (docs/security.md).
"""

from __future__ import annotations

import json
import logging
import re
import time
import uuid
from typing import Any

from opentelemetry import trace
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.api.errors import INTERNAL_DETAIL
from app.observability import Metrics
from app.tracing import current_ids, mark_error

log = logging.getLogger("simscore.access")

_SAFE_ID = re.compile(r"^[A-Za-z0-9._:\-]{1,128}$")
SECURITY_HEADERS: tuple[tuple[bytes, bytes], ...] = (
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"x-frame-options", b"DENY"),
)
_QUIET_PATHS = ("/healthz", "/readyz", "/metrics")
AMBIGUOUS_LENGTH = (
    "the request has both Content-Length and Transfer-Encoding, so its length is ambiguous "
    "(RFC 9112 section 6.1): send one of them"
)


class RequestContextMiddleware:
    """Tags, secures, times, logs and counts every HTTP request."""

    def __init__(self, app: ASGIApp, *, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        given = headers.get("x-request-id", "")
        request_id = given if _SAFE_ID.match(given) else uuid.uuid4().hex
        state: dict[str, Any] = scope.setdefault("state", {})
        state["request_id"] = request_id
        has_body = headers.get("content-length", "0") not in ("", "0") or (
            "transfer-encoding" in headers
        )
        body_read = not has_body
        status = 500
        response_started = False

        async def receive_wrapper() -> Message:
            nonlocal body_read
            message = await receive()
            if message["type"] != "http.request" or not message.get("more_body", False):
                body_read = True
            return message

        async def send_wrapper(message: Message) -> None:
            nonlocal status, response_started
            if message["type"] == "http.response.start":
                response_started = True
                status = message["status"]
                extra = [(b"x-request-id", request_id.encode()), *SECURITY_HEADERS]
                if not body_read:
                    extra.append((b"connection", b"close"))
                message["headers"] = [*message.get("headers", []), *extra]
            await send(message)

        try:
            if "content-length" in headers and "transfer-encoding" in headers:
                self.metrics.failures.labels(reason="invalid_input").inc()
                await _send_json(
                    send_wrapper, 400, {"detail": AMBIGUOUS_LENGTH, "request_id": request_id}
                )
            else:
                await self.app(scope, receive_wrapper, send_wrapper)
        except Exception as exc:
            # A bug: log it with the request id, answer JSON (if we still can), keep serving.
            log.exception(
                "unhandled error in %s %s (request %s)", scope["method"], scope["path"], request_id
            )
            self.metrics.failures.labels(reason="internal").inc()
            mark_error(trace.get_current_span(), exc)
            if not response_started:
                await _send_json(
                    send_wrapper, 500, {"detail": INTERNAL_DETAIL, "request_id": request_id}
                )
        finally:
            self._record(scope, state, request_id, status, time.perf_counter() - started)

    def _record(
        self, scope: Scope, state: dict[str, Any], request_id: str, status: int, elapsed: float
    ) -> None:
        route = scope.get("route")
        endpoint = getattr(route, "path", None) or "unmatched"
        self.metrics.requests.labels(status=str(status)).inc()
        self.metrics.request_duration.labels(endpoint=endpoint).observe(elapsed)
        if scope["path"].startswith(_QUIET_PATHS):
            return
        line: dict[str, Any] = {"request_id": request_id}
        ids = current_ids()  # the server span's, when the request is traced
        if ids is not None:
            line["trace_id"], line["span_id"] = ids
        line |= {
            "method": scope["method"],
            "path": scope["path"],
            "status": status,
            "ms": round(elapsed * 1000, 2),
            **state.get("log", {}),
        }
        log.info(json.dumps(line))


async def _send_json(send: Send, status: int, body: dict[str, Any]) -> None:
    payload = json.dumps(body).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(payload)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": payload})
