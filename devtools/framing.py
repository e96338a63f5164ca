"""Request-smuggling shapes (RFC 9112 section 6): requests whose body length is ambiguous, each
followed on the same connection by a second request. A server that frames the body one way and
a proxy in front of it another would hand the second request to the wrong client; the safe
answers are a 400 with the connection closed, or a framing both sides agree on.

Shared by ``tests/test_server_hostile.py`` (against ``simscore serve``) and
``deploy/proxy_probes.py`` (against nginx in front of it).
"""

from __future__ import annotations

import re
import socket
import time
from dataclasses import dataclass

from devtools.sockets import connect

SMUGGLED = b"GET /smuggled HTTP/1.1\r\nHost: simscore\r\n\r\n"


@dataclass(frozen=True)
class FramingCase:
    """A request (head and body bytes) sent before ``SMUGGLED`` on one connection."""

    name: str
    head: tuple[str, ...]  # header lines after the request line
    body: bytes
    path: str = "/healthz"
    method: str = "GET"

    def raw(self, extra: tuple[str, ...] = ()) -> bytes:
        """The request's bytes, with ``extra`` header lines first."""
        lines = [f"{self.method} {self.path} HTTP/1.1", "Host: simscore", *extra, *self.head]
        return ("\r\n".join(lines) + "\r\n\r\n").encode() + self.body


CHUNKED_EMPTY = b"0\r\n\r\n"
FRAMING_CASES: tuple[FramingCase, ...] = (
    FramingCase(
        "Content-Length and Transfer-Encoding",
        ("Content-Length: 5", "Transfer-Encoding: chunked"),
        CHUNKED_EMPTY,
    ),
    FramingCase(
        "Transfer-Encoding and Content-Length 0",
        ("Transfer-Encoding: chunked", "Content-Length: 0"),
        CHUNKED_EMPTY,
    ),
    FramingCase("two equal Content-Length", ("Content-Length: 5", "Content-Length: 5"), b"hello"),
    FramingCase(
        "two different Content-Length", ("Content-Length: 5", "Content-Length: 0"), b"hello"
    ),
    FramingCase("Content-Length list", ("Content-Length: 5, 0",), b"hello"),
    FramingCase("obs-fold in a header", ("X-Note: a", " folded", "Content-Length: 0"), b""),
    FramingCase("obs-fold in Transfer-Encoding", ("Transfer-Encoding:", " chunked"), CHUNKED_EMPTY),
    FramingCase("Transfer-Encoding gzip", ("Transfer-Encoding: gzip",), b"hello"),
    FramingCase("Transfer-Encoding gzip, chunked", ("Transfer-Encoding: gzip, chunked",), b""),
    FramingCase(
        "Transfer-Encoding chunked, chunked", ("Transfer-Encoding: chunked, chunked",), b""
    ),
    FramingCase("Transfer-Encoding identity", ("Transfer-Encoding: identity",), b""),
    FramingCase(
        "space before the colon", ("Transfer-Encoding : chunked", "Content-Length: 5"), b"hello"
    ),
)


@dataclass(frozen=True)
class FramingAnswer:
    statuses: tuple[int, ...]  # every status line received, in order
    closed: bool  # the server closed the connection (within the wait)
    smuggled_answered: bool  # a second answer came: the second request was served

    def describe(self) -> str:
        statuses = ", ".join(str(s) for s in self.statuses) or "no answer"
        after = "closed" if self.closed else "kept open"
        second = "; the second request was answered" if self.smuggled_answered else ""
        return f"{statuses}, {after}{second}"


def send_with_smuggled(
    url: str, case: FramingCase, wait_s: float = 3.0, extra: tuple[str, ...] = ()
) -> FramingAnswer:
    """Send ``case`` (with ``extra`` header lines) then ``SMUGGLED`` in one write and read until
    the server closes or ``wait_s`` passes."""
    with connect(url) as sock:
        sock.sendall(case.raw(extra) + SMUGGLED)
        received, closed = _read(sock, wait_s)
    statuses = tuple(int(m) for m in re.findall(rb"HTTP/1\.[01] (\d{3}) ", received))
    return FramingAnswer(statuses, closed, len(statuses) > 1)


def _read(sock: socket.socket, wait_s: float) -> tuple[bytes, bool]:
    received = b""
    give_up = time.monotonic() + wait_s
    while (left := give_up - time.monotonic()) > 0:
        sock.settimeout(left)
        try:
            chunk = sock.recv(65536)
        except TimeoutError:
            return received, False
        except ConnectionResetError:
            return received, True
        if not chunk:
            return received, True
        received += chunk
    return received, False
