"""The HTTP server ``simscore serve`` runs: uvicorn with the limits a public service needs.

* **Slow clients are cut off.** A connection has ``SIMSCORE_HEADER_TIMEOUT_S`` to send its
  request line and headers (from connect, and again after each response); past it the server
  answers 408 and closes. Idle keep-alive connections close after
  ``SIMSCORE_KEEPALIVE_TIMEOUT_S``. Body reads are timed by the app (``app.api.forms``).
* **Connections are bounded**: a connection past ``SIMSCORE_MAX_CONNECTIONS`` open ones is
  answered 503 (JSON, ``Retry-After``) and closed at once; the health probe (``app.probe``)
  takes that answer for a busy server, not a dead one. The server's own answers (this 503,
  the 408, the 400 below) carry the same headers as the app's (``X-Request-ID``, ``nosniff``).
* **Folded header lines are refused**: a request head with an obs-fold (a line starting with a
  space or tab, RFC 9112 section 5.2) is answered 400 and closed; h11 would unfold it, and a
  proxy that does not could frame the body differently. (Both ``Content-Length`` and
  ``Transfer-Encoding``: the app's middleware answers 400; other framing errors: h11 does.)
* **Drain without loss.** The first SIGTERM/SIGINT stops admission (503 for new requests,
  ``/readyz`` 503); uvicorn closes idle connections and waits up to
  ``SIMSCORE_DRAIN_TIMEOUT_S`` for requests in progress, then the app's lifespan stops the
  batcher. The process exits 0 after a clean drain, 1 if the drain timed out, 3 if start-up
  failed.
* **A failed GPU restarts the process.** After a sticky device error (``app.service``) the
  server shuts down as on a signal (requests in flight get their 503) and the process exits 4,
  so that compose's restart policy or Kubernetes brings a fresh one.
* **A start-up failure is one line**: the lifespan logs ``start-up failed: ...`` and the
  traceback uvicorn would print after it is dropped.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
import signal
import threading
import uuid
from collections.abc import Callable, Generator
from types import FrameType
from typing import Any, Protocol

import h11
import uvicorn
from fastapi import FastAPI
from uvicorn.config import STARTUP_FAILURE
from uvicorn.protocols.http.h11_impl import H11Protocol

from app.api.middleware import SECURITY_HEADERS
from app.config import Settings
from app.probe import BUSY_MARKER

log = logging.getLogger(__name__)
HEADER_LIMIT_BYTES = 64 * 1024  # request line and headers together
DEVICE_FAILURE = 4  # the exit code after a sticky device error
_OBS_FOLD = re.compile(rb"\r\n[ \t]")
OBS_FOLD_DETAIL = (
    "a header line of the request is folded (it starts with a space or a tab, obs-fold, "
    "RFC 9112 section 5.2): send each header on one line"
)


class Lifecycle(Protocol):
    """What the server needs of the app's service state (``app.service.Service``)."""

    def start_draining(self) -> None: ...

    @property
    def startup_failed(self) -> bool: ...

    @property
    def drained_cleanly(self) -> bool: ...

    @property
    def fatal(self) -> bool: ...

    def when_fatal(self, callback: Callable[[], None]) -> None: ...


class HeaderTimeoutProtocol(H11Protocol):
    """uvicorn's h11 protocol with a deadline for each request's line and headers, and a bound on
    open connections (the connection past it is answered 503 and closed at once)."""

    header_timeout_s: float = 10.0
    max_connections: int = 512

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        if len(self.connections) > self.max_connections:
            self._answer_and_close(
                503,
                "Service Unavailable",
                f"{len(self.connections) - 1} connections are open {BUSY_MARKER}; retry shortly",
                retry_after=True,
            )
            return
        self._arm_header_timer()

    def data_received(self, data: bytes) -> None:
        if self.conn.their_state is h11.IDLE and self._folded(data):
            self._answer_and_close(400, "Bad Request", OBS_FOLD_DETAIL)
            return
        super().data_received(data)
        if self.conn.their_state is not h11.IDLE:
            self._disarm_header_timer()

    def on_response_complete(self) -> None:
        # A pipelined request's head may already wait in h11's buffer: look at it before h11
        # parses it (once per request: the buffer holds at most one read).
        self._head_tail = b""
        pending = self.conn.trailing_data[0][:HEADER_LIMIT_BYTES]
        if pending and self._folded(pending):
            self._answer_and_close(400, "Bad Request", OBS_FOLD_DETAIL)
        super().on_response_complete()
        if not self.transport.is_closing():
            self._arm_header_timer()

    def _folded(self, data: bytes) -> bool:
        """Whether the request head arriving in ``data`` (after what arrived of it before: its
        last bytes are kept) has a folded line; each byte of a head is searched once."""
        scan = getattr(self, "_head_tail", b"") + data
        end = scan.find(b"\r\n\r\n")
        head = scan if end < 0 else scan[: end + 2]
        self._head_tail = scan[-3:] if end < 0 else b""
        return _OBS_FOLD.search(head) is not None

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm_header_timer()
        super().connection_lost(exc)

    def _arm_header_timer(self) -> None:
        self._disarm_header_timer()
        self._header_timer: asyncio.TimerHandle | None = self.loop.call_later(
            self.header_timeout_s, self._header_timed_out
        )

    def _disarm_header_timer(self) -> None:
        timer = getattr(self, "_header_timer", None)
        if timer is not None:
            timer.cancel()
            self._header_timer = None

    def _header_timed_out(self) -> None:
        self._header_timer = None
        if self.transport.is_closing() or self.conn.their_state is not h11.IDLE:
            return
        if self.conn.trailing_data[0]:  # part of a request arrived: say why it is cut off
            detail = f"request headers not received within {self.header_timeout_s:g} s"
            self._answer_and_close(408, "Request Timeout", detail)
        else:
            self.transport.close()

    def _answer_and_close(
        self, status: int, reason: str, detail: str, *, retry_after: bool = False
    ) -> None:
        """A JSON answer written by the server itself (no request reached the app), with the
        headers the app's middleware gives its own answers, then close."""
        request_id = uuid.uuid4().hex
        body = json.dumps({"detail": detail, "request_id": request_id}).encode()
        headers = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
            (b"connection", b"close"),
            (b"x-request-id", request_id.encode()),
            *SECURITY_HEADERS,
        ]
        if retry_after:
            headers.append((b"retry-after", b"1"))
        head = b"".join(name + b": " + value + b"\r\n" for name, value in headers)
        status_line = f"HTTP/1.1 {status} {reason}\r\n".encode()
        self.transport.write(status_line + head + b"\r\n" + body)
        self.transport.close()


class _DropStartupTraceback(logging.Filter):
    """Drops the traceback uvicorn logs for a start-up failure the app already reported."""

    def __init__(self, lifecycle: Lifecycle) -> None:
        super().__init__()
        self.lifecycle = lifecycle

    def filter(self, record: logging.LogRecord) -> bool:
        return not (self.lifecycle.startup_failed and record.getMessage().startswith("Traceback"))


class SimscoreServer(uvicorn.Server):
    """uvicorn's server, draining the app on the first signal and exiting without re-raising it."""

    def __init__(self, config: uvicorn.Config, lifecycle: Lifecycle) -> None:
        super().__init__(config)
        self.lifecycle = lifecycle
        lifecycle.when_fatal(self._fatal)

    def _fatal(self) -> None:
        """The device failed: shut down as on a signal (the exit code says why)."""
        self.should_exit = True

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        self.lifecycle.start_draining()  # 503 for new work from the first signal on
        super().handle_exit(sig, frame)

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        """Handle SIGINT/SIGTERM ourselves; unlike uvicorn, do not re-raise them at the end,
        so a clean drain exits 0. (Signals reach the main thread only: a server run in another
        thread, as tests do, is stopped through ``should_exit``.)"""
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        previous = {
            sig: signal.signal(sig, self.handle_exit) for sig in (signal.SIGINT, signal.SIGTERM)
        }
        try:
            yield
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    @property
    def exit_code(self) -> int:
        if not self.started or self.lifecycle.startup_failed:
            return STARTUP_FAILURE
        if self.lifecycle.fatal:
            return DEVICE_FAILURE
        return 0 if self.lifecycle.drained_cleanly else 1


def build_server(app: FastAPI, settings: Settings, *, host: str, port: int) -> SimscoreServer:
    """A uvicorn server for ``app`` with simscore's timeouts and bounds (module docstring)."""
    lifecycle: Lifecycle = app.state.service
    protocol = type(
        "SimscoreHttpProtocol",
        (HeaderTimeoutProtocol,),
        {
            "header_timeout_s": settings.header_timeout_s,
            "max_connections": settings.max_connections,
        },
    )
    config_kwargs: dict[str, Any] = {
        "host": host,
        "port": port,
        "http": protocol,
        "ws": "none",
        "lifespan": "on",
        "log_level": settings.log_level.lower(),
        "access_log": False,
        "timeout_keep_alive": max(1, round(settings.keepalive_timeout_s)),
        "timeout_graceful_shutdown": max(1, round(settings.drain_timeout_s)),
        "h11_max_incomplete_event_size": HEADER_LIMIT_BYTES,
        "server_header": False,
    }
    server = SimscoreServer(uvicorn.Config(app, **config_kwargs), lifecycle)
    logging.getLogger("uvicorn.error").addFilter(_DropStartupTraceback(lifecycle))
    return server


def serve(app: FastAPI, settings: Settings, *, host: str, port: int) -> int:
    """Run until a signal; the process's exit code: 0 after a clean drain, 1 if the drain timed
    out, 3 if start-up failed (uvicorn's code for it), 4 after a sticky device error."""
    server = build_server(app, settings, host=host, port=port)
    try:
        server.run()
    except SystemExit as exit_:  # uvicorn exits this way when start-up fails
        return exit_.code if isinstance(exit_.code, int) else STARTUP_FAILURE
    return server.exit_code
