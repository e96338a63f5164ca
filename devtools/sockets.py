"""Raw-socket clients for what HTTP libraries will not do: send half a request and stall."""

from __future__ import annotations

import socket
import time
from urllib.parse import urlsplit


def connect(url: str, timeout_s: float = 10) -> socket.socket:
    """A blocking TCP connection to ``url``'s host and port."""
    parts = urlsplit(url)
    sock = socket.create_connection((parts.hostname or "127.0.0.1", parts.port or 80), timeout_s)
    sock.settimeout(None)
    return sock


def read_until_closed(sock: socket.socket, timeout_s: float) -> tuple[float | None, bytes]:
    """Read until the peer closes ``sock`` or ``timeout_s`` passes: the monotonic time it closed
    (None if it did not) and everything it sent."""
    sock.settimeout(timeout_s)
    received = b""
    try:
        while chunk := sock.recv(65536):
            received += chunk
    except TimeoutError:
        return None, received
    except ConnectionResetError:
        pass
    return time.monotonic(), received
