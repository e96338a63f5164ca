"""The one place that maps errors to HTTP statuses, failure reasons, JSON bodies and logs."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from app import errors as e
from app.tracing import note_error

log = logging.getLogger("simscore.errors")
RETRY_AFTER_S = "1"
INTERNAL_DETAIL = "internal error: the server failed to score this request"


@dataclass(frozen=True)
class Mapped:
    status: int
    detail: str
    reason: str | None  # label of simscore_request_failures_total, None if not a failure
    headers: Mapping[str, str] | None = None


_STATUS: tuple[tuple[type[BaseException], int, str], ...] = (
    (e.ImageTooLarge, 413, "invalid_input"),
    (e.UnsupportedImageFormat, 415, "invalid_input"),
    (e.NotAnImage, 400, "invalid_input"),
    (e.ImageTooSmall, 422, "invalid_input"),
    (e.SizeMismatch, 422, "invalid_input"),
    (e.InvalidRequest, 422, "invalid_input"),
    (e.ScoreUnavailable, 422, "invalid_input"),
    (e.UploadStalled, 408, "invalid_input"),
    (e.InputError, 400, "invalid_input"),
    (e.Unauthorized, 401, "invalid_input"),
    (e.Overloaded, 429, "rejected"),
    (e.NotReady, 503, "rejected"),
    (e.DeviceFailed, 503, "device"),
    (e.DeadlineExceeded, 504, "timeout"),
    (e.OutOfMemory, 413, "oom"),
    (e.ClientGone, 499, "cancelled"),
)
_HEADERS: Mapping[int, Mapping[str, str]] = {
    401: {"WWW-Authenticate": "Bearer"},
    408: {"Connection": "close"},
    429: {"Retry-After": RETRY_AFTER_S},
    503: {"Retry-After": RETRY_AFTER_S},
}


def map_exception(exc: BaseException) -> Mapped:
    """Status, detail and failure reason for any exception (unknown ones are 500s)."""
    for kind, status, reason in _STATUS:
        if isinstance(exc, kind):
            return Mapped(status, str(exc), reason, _HEADERS.get(status))
    return Mapped(500, INTERNAL_DETAIL, "internal")


def request_id(request: Request) -> str | None:
    found: str | None = getattr(request.state, "request_id", None)
    return found


def count_failure(request: Request, mapped: Mapped, exc: BaseException | None = None) -> None:
    """Count a failure; a 500 also logs its traceback with the request id."""
    if mapped.status == 500 and exc is not None:
        log.error(
            "internal error (request %s)",
            request_id(request),
            exc_info=(type(exc), exc, exc.__traceback__),
        )
    metrics = getattr(request.app.state, "metrics", None)
    if metrics is not None and mapped.reason is not None:
        metrics.failures.labels(reason=mapped.reason).inc()


def error_response(request: Request, mapped: Mapped) -> JSONResponse:
    return JSONResponse(
        {"detail": mapped.detail, "request_id": request_id(request)},
        status_code=mapped.status,
        headers=dict(mapped.headers) if mapped.headers else None,
    )


def error_item(request: Request, exc: BaseException) -> tuple[int, str]:
    """``(status, detail)`` for one failed item of a batch request, counted and logged."""
    mapped = map_exception(exc)
    count_failure(request, mapped, exc)
    return mapped.status, mapped.detail


def install(app: FastAPI) -> None:
    """Register the handlers that turn every error into JSON with a ``detail``."""

    @app.exception_handler(e.SimscoreError)
    async def _domain(request: Request, exc: e.SimscoreError) -> JSONResponse:
        mapped = map_exception(exc)
        count_failure(request, mapped, exc)
        note_error(exc)
        return error_response(request, mapped)

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        problems = []
        for error in exc.errors():
            where = ".".join(str(part) for part in error.get("loc", ()) if part != "body")
            problems.append(f"{where or 'request'}: {error.get('msg', 'invalid')}")
        mapped = Mapped(422, "invalid request: " + "; ".join(problems), "invalid_input")
        count_failure(request, mapped)
        note_error(exc)
        return error_response(request, mapped)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        reason = "invalid_input" if 400 <= exc.status_code < 500 else None
        mapped = Mapped(exc.status_code, str(exc.detail), reason, exc.headers)
        count_failure(request, mapped)
        note_error(exc)
        return error_response(request, mapped)
