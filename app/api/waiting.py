"""Waiting for a request's work while watching its client and its deadline."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import TypeVar

from starlette.requests import Request

from app.errors import ClientGone, DeadlineExceeded
from app.service import Admission

T = TypeVar("T")


# How long a cancelled request's work may take to unwind before its answer goes anyway (it
# awaits nothing that blocks: its decodes and pairs are cancelled, not waited for).
UNWIND_S = 1.0


async def until_done(request: Request, work: Awaitable[T], admitted: Admission) -> T:
    """Await ``work`` unless the client goes away or the deadline passes; then cancel it, and
    answer once it has unwound: its queued pairs are dropped and its decodes not yet started
    never run (a decode already running finishes; screening bounds its cost)."""
    task = asyncio.ensure_future(work)
    watcher = asyncio.ensure_future(_disconnected(request))
    try:
        done, _ = await asyncio.wait(
            {task, watcher}, timeout=admitted.remaining_s, return_when=asyncio.FIRST_COMPLETED
        )
    finally:
        watcher.cancel()
    if task in done:
        return task.result()
    task.cancel()
    await asyncio.wait({task}, timeout=UNWIND_S)
    if watcher in done:
        raise ClientGone("the client closed the connection")
    timeout_s = admitted.pipeline.settings.request_timeout_s
    raise DeadlineExceeded(f"no result within {timeout_s:g} s (SIMSCORE_REQUEST_TIMEOUT_S)")


async def _disconnected(request: Request) -> None:
    while True:
        message = await request.receive()
        if message["type"] == "http.disconnect":
            return
