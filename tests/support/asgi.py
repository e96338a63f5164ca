"""Driving the app at the ASGI level, for what an HTTP client hides: how much of a body the app
pulled, a body that pauses, a client that goes away mid-request."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable, Iterable, Mapping, Sequence
from typing import Any

from devtools import attacks
from devtools.attacks import CONTENT_TYPE, Part

CHUNK = 16 * 1024


class Body:
    """A request body fed chunk by chunk; it can stop at ``pause_at`` bytes until ``resume``
    is set, and tells the test when it got there (``paused``)."""

    def __init__(
        self, chunks: Iterable[bytes], *, pause_at: int | None = None, every_s: float = 0.0
    ) -> None:
        self.chunks = chunks
        self.pause_at = pause_at
        self.every_s = every_s
        self.paused = asyncio.Event()
        self.resume = asyncio.Event()

    async def __aiter__(self) -> AsyncIterator[bytes]:
        sent = 0
        for chunk in self.chunks:
            if self.pause_at is not None and sent >= self.pause_at and not self.resume.is_set():
                self.paused.set()
                await self.resume.wait()
            if self.every_s:
                await asyncio.sleep(self.every_s)
            sent += len(chunk)
            yield chunk


class RawRequest:
    """One ``POST`` driven at the ASGI level: the app pulls the body from ``body`` (``pulled``
    counts what it took), and the client goes away when the test sets ``gone``."""

    def __init__(
        self,
        app: Any,
        path: str,
        body: Body | Iterable[bytes],
        *,
        headers: Mapping[str, str] | None = None,
        content_length: int | None = None,
    ) -> None:
        self.pulled = 0
        self.body_done = False
        self.gone = asyncio.Event()
        self.messages: list[Mapping[str, Any]] = []
        self.body = body if isinstance(body, Body) else Body(body)
        self._chunks = aiter(self.body)
        raw_headers = [(b"content-type", CONTENT_TYPE.encode())]
        if content_length is not None:
            raw_headers.append((b"content-length", str(content_length).encode()))
        else:
            raw_headers.append((b"transfer-encoding", b"chunked"))
        for name, value in (headers or {}).items():
            raw_headers.append((name.lower().encode(), value.encode()))
        scope = {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": "POST",
            "scheme": "http",
            "path": path,
            "raw_path": path.encode(),
            "query_string": b"",
            "root_path": "",
            "headers": raw_headers,
            "client": ("127.0.0.1", 4321),
            "server": ("simscore.test", 80),
            "state": {},
        }
        self.task = asyncio.ensure_future(app(scope, self._receive, self._send))

    async def _receive(self) -> Mapping[str, Any]:
        if not self.body_done:
            try:
                chunk = await anext(self._chunks)
            except StopAsyncIteration:
                self.body_done = True
                return {"type": "http.request", "body": b"", "more_body": False}
            self.pulled += len(chunk)
            return {"type": "http.request", "body": chunk, "more_body": True}
        await self.gone.wait()
        return {"type": "http.disconnect"}

    async def _send(self, message: Mapping[str, Any]) -> None:
        self.messages.append(message)

    async def answer(self, timeout_s: float = 60) -> tuple[int, dict[str, str], bytes]:
        """Status, headers and body, once the app is done with the request."""
        await asyncio.wait_for(asyncio.shield(self.task), timeout_s)
        start = next(m for m in self.messages if m["type"] == "http.response.start")
        headers = {k.decode().lower(): v.decode() for k, v in start["headers"]}
        body = b"".join(m.get("body", b"") for m in self.messages if m["type"] != start["type"])
        return start["status"], headers, body


def raw(
    app: Any, path: str, parts: Sequence[Part], *, chunk: int = CHUNK, **options: Any
) -> RawRequest:
    """A ``RawRequest`` for a form, with its ``Content-Length`` (or ``content_length=None``
    for a chunked body) and optionally paused at ``pause_at`` bytes."""
    pause_at = options.pop("pause_at", None)
    length = options.pop("content_length", attacks.form_length(parts))
    body = Body(attacks.form_chunks(parts, chunk), pause_at=pause_at)
    return RawRequest(app, path, body, content_length=length, **options)


async def until(condition: Callable[[], bool], timeout_s: float = 30) -> None:
    for _ in range(int(timeout_s / 0.01)):
        if condition():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("condition not met in time")


def detail(body: bytes) -> str:
    found: str = json.loads(body)["detail"]
    return found
