"""An in-process app with its lifespan, and a client for it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
from fastapi import FastAPI

from app.api.deps import ServiceState
from app.config import Settings
from app.main import create_app


@asynccontextmanager
async def running(settings: Settings) -> AsyncIterator[tuple[FastAPI, httpx.AsyncClient]]:
    """Start the app's lifespan (load, warm up, start the batcher) and yield a client."""
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(
            transport=transport, base_url="http://simscore.test", timeout=120
        ) as client:
            yield app, client


def state_of(app: FastAPI) -> ServiceState:
    state: ServiceState = app.state.simscore
    return state


def files(reference: bytes, candidate: bytes) -> dict[str, tuple[str, bytes, str]]:
    return {
        "reference": ("reference.png", reference, "application/octet-stream"),
        "candidate": ("candidate.png", candidate, "application/octet-stream"),
    }


def metric_value(text: str, name: str) -> float:
    """The value of an unlabelled sample in Prometheus text."""
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    raise KeyError(name)
