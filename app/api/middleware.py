"""One pure-ASGI middleware: request id, body-size cap, access log line and HTTP metrics.

It is pure ASGI (not ``BaseHTTPMiddleware``) so uploads stream through it and a client that
goes away is still seen by the route.
"""

from __future__ import annotations

import json
import logging
import re
import time
import uuid
from collections.abc import Callable
from typing import Any

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.observability import Metrics

log = logging.getLogger("simscore.access")

_SAFE_ID = re.compile(r"^[A-Za-z0-9._:\-]{1,128}$")


class BodyTooLarge(HTTPException):
    """The request body passed the route's byte cap while it was being read.

    An ``HTTPException`` so that FastAPI's form parsing re-raises it as it is (413)."""

    def __init__(self, limit: int) -> None:
        super().__init__(
            413,
            f"request body over {limit} bytes: each upload may be at most "
            "SIMSCORE_MAX_UPLOAD_BYTES",
        )


class RequestContextMiddleware:
    """Tags, bounds, times, logs and counts every HTTP request."""

    def __init__(
        self, app: ASGIApp, *, metrics: Metrics, body_limit: Callable[[str], int | None]
    ) -> None:
        self.app = app
        self.metrics = metrics
        self.body_limit = body_limit

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
        path: str = scope["path"]
        limit = self.body_limit(path) if scope["method"] == "POST" else None
        status = 500
        response_started = False

        async def send_wrapper(message: Message) -> None:
            nonlocal status, response_started
            if message["type"] == "http.response.start":
                response_started = True
                status = message["status"]
                message.setdefault("headers", [])
                message["headers"] = [
                    *message["headers"],
                    (b"x-request-id", request_id.encode()),
                ]
            await send(message)

        received = 0

        async def receive_wrapper() -> Message:
            nonlocal received
            message = await receive()
            if limit is not None and message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise BodyTooLarge(limit)
            return message

        try:
            declared = int(headers.get("content-length", "0") or 0)
        except ValueError:
            declared = 0
        try:
            if limit is not None and declared > limit:
                raise BodyTooLarge(limit)
            await self.app(scope, receive_wrapper, send_wrapper)
        except BodyTooLarge as exc:
            if response_started:
                raise
            self.metrics.failures.labels(reason="invalid_input").inc()
            await _send_json(send_wrapper, 413, {"detail": exc.detail, "request_id": request_id})
        except Exception:
            # A bug: answer JSON (if we still can), log it, keep serving.
            log.exception(
                "unhandled error in %s %s (request %s)", scope["method"], path, request_id
            )
            self.metrics.failures.labels(reason="internal").inc()
            if response_started:
                return
            await _send_json(
                send_wrapper,
                500,
                {
                    "detail": "internal error: the server failed to score this request",
                    "request_id": request_id,
                },
            )
        finally:
            elapsed = time.perf_counter() - started
            route = scope.get("route")
            endpoint = getattr(route, "path", None) or "unmatched"
            self.metrics.requests.labels(status=str(status)).inc()
            self.metrics.request_duration.labels(endpoint=endpoint).observe(elapsed)
            if not path.startswith(("/healthz", "/readyz", "/metrics")):
                extra = state.get("log", {})
                log.info(
                    json.dumps(
                        {
                            "request_id": request_id,
                            "method": scope["method"],
                            "path": path,
                            "status": status,
                            "ms": round(elapsed * 1000, 2),
                            **extra,
                        }
                    )
                )


async def _send_json(send: Send, status: int, body: dict[str, Any]) -> None:
    payload = json.dumps(body).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(payload)).encode()),
                (b"connection", b"close"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": payload})
