"""Shared state of one app and the dependencies routes declare (``Annotated`` aliases)."""

from __future__ import annotations

import hmac
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, HTTPException, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from app.config import Settings
from app.errors import NotReady
from app.observability import Metrics
from app.pipeline import ComparePipeline


@dataclass
class ServiceState:
    """What the lifespan sets up and the routes read."""

    settings: Settings
    metrics: Metrics
    pipeline: ComparePipeline | None = None
    ready: bool = False
    draining: bool = False
    startup_failed: bool = False
    drained_cleanly: bool = True

    def start_draining(self) -> None:
        """Stop admitting: /readyz and new scoring requests answer 503 from now on."""
        self.draining = True
        self.ready = False
        self.metrics.ready.set(0)
        if self.pipeline is not None:
            self.pipeline.batcher.stop_admitting()

    def admitting_pipeline(self) -> ComparePipeline:
        if self.draining:
            raise NotReady("the server is shutting down; retry on another replica")
        if not self.ready or self.pipeline is None:
            raise NotReady("the model is still loading; retry shortly")
        return self.pipeline


def get_state(request: Request) -> ServiceState:
    state: ServiceState = request.app.state.simscore
    return state


StateDep = Annotated[ServiceState, Depends(get_state)]


async def get_pipeline(state: StateDep) -> AsyncIterator[ComparePipeline]:
    """The pipeline, holding one of ``SIMSCORE_MAX_CONCURRENT_REQUESTS`` slots (else 429)."""
    pipeline = state.admitting_pipeline()
    with pipeline.admission():
        yield pipeline


PipelineDep = Annotated[ComparePipeline, Depends(get_pipeline)]


def require_api_key(request: Request, state: StateDep) -> None:
    """When ``SIMSCORE_API_KEYS`` is set, demand ``Authorization: Bearer <key>``."""
    keys = state.settings.api_keys
    if not keys:
        return
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    given = token.strip().encode()
    # Compare against every key, in constant time, so timing says nothing about which matched.
    matched = False
    for key in keys:
        matched |= hmac.compare_digest(given, key.get_secret_value().encode())
    if scheme.lower() != "bearer" or not matched:
        raise HTTPException(
            401,
            "missing or invalid API key: send 'Authorization: Bearer <key>'",
            headers={"WWW-Authenticate": "Bearer"},
        )


_bearer = HTTPBearer(
    auto_error=False,
    description="Needed only when the server sets SIMSCORE_API_KEYS.",
)


def api_key_dependency(
    request: Request,
    state: StateDep,
    _credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> None:
    """``require_api_key`` as a dependency that also documents the bearer scheme in OpenAPI."""
    require_api_key(request, state)


ApiKey = Depends(api_key_dependency)
