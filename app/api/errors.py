"""The one place that maps errors to HTTP statuses, failure reasons and JSON bodies."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from app import errors as e

RETRY_AFTER_S = "1"


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
    (e.InputError, 400, "invalid_input"),
    (e.Overloaded, 429, "rejected"),
    (e.NotReady, 503, "rejected"),
    (e.DeadlineExceeded, 504, "timeout"),
    (e.OutOfMemory, 413, "oom"),
    (e.ClientGone, 499, "cancelled"),
)


def map_exception(exc: BaseException) -> Mapped:
    """Status, detail and failure reason for any exception (unknown ones are 500s)."""
    for kind, status, reason in _STATUS:
        if isinstance(exc, kind):
            retry = {"Retry-After": RETRY_AFTER_S} if status in (429, 503) else None
            return Mapped(status, str(exc), reason, retry)
    return Mapped(500, "internal error: the server failed to score this request", "internal")


def error_response(request: Request, mapped: Mapped) -> JSONResponse:
    request_id = getattr(request.state, "request_id", None)
    metrics = getattr(request.app.state, "metrics", None)
    if metrics is not None and mapped.reason is not None:
        metrics.failures.labels(reason=mapped.reason).inc()
    return JSONResponse(
        {"detail": mapped.detail, "request_id": request_id},
        status_code=mapped.status,
        headers=mapped.headers,
    )


def install(app: FastAPI) -> None:
    """Register the handlers that turn every error into JSON with a ``detail``."""

    @app.exception_handler(e.SimscoreError)
    async def _domain(request: Request, exc: e.SimscoreError) -> JSONResponse:
        return error_response(request, map_exception(exc))

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        problems = []
        for error in exc.errors():
            where = ".".join(str(part) for part in error.get("loc", ()) if part != "body")
            problems.append(f"{where or 'request'}: {error.get('msg', 'invalid')}")
        detail = "invalid request: " + "; ".join(problems)
        if any(err.get("type") == "missing" for err in exc.errors()):
            detail += " (send multipart/form-data with file fields 'reference' and 'candidate')"
        return error_response(request, Mapped(422, detail, "invalid_input"))

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        reason = "invalid_input" if 400 <= exc.status_code < 500 else None
        mapped = Mapped(exc.status_code, str(exc.detail), reason, exc.headers)
        return error_response(request, mapped)
