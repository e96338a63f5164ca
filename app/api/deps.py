"""What routes declare (``Annotated`` dependencies): the service, the API key check and the
admission slot. None of them reads the request body, so a request is authenticated and
admitted (or refused: 401, 429, 503) from its headers alone, before any upload byte is read."""

from __future__ import annotations

import hmac
from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from app.errors import Unauthorized
from app.service import Admission, Service


def get_service(request: Request) -> Service:
    service: Service = request.app.state.service
    return service


ServiceDep = Annotated[Service, Depends(get_service)]


def check_api_key(request: Request, service: Service) -> None:
    """When ``SIMSCORE_API_KEYS`` is set, demand ``Authorization: Bearer <key>``."""
    keys = service.settings.api_keys
    if not keys:
        return
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    given = token.strip().encode()
    # Compare against every key, in constant time, so timing says nothing about which matched.
    matched = False
    for key in keys:
        matched |= hmac.compare_digest(given, key.get_secret_value().encode())
    if scheme.lower() != "bearer" or not matched:
        raise Unauthorized("missing or invalid API key: send 'Authorization: Bearer <key>'")


_bearer = HTTPBearer(
    auto_error=False, description="Needed only when the server sets SIMSCORE_API_KEYS."
)


async def api_key(
    request: Request,
    service: ServiceDep,
    _credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> None:
    """``check_api_key`` as a dependency that also documents the bearer scheme in OpenAPI."""
    check_api_key(request, service)


ApiKey = Depends(api_key)


async def admission(service: ServiceDep) -> AsyncIterator[Admission]:
    """A request slot, held until the answer is sent (429 or 503 when there is none); on the
    event loop, like every change of the service's state."""
    with service.admit() as admitted:
        yield admitted


AdmissionDep = Annotated[Admission, Depends(admission)]
