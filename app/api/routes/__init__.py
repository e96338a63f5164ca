"""One router per resource: compare, batch, maps, operations, and the page (with the docs)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import APIRouter

from app.api.deps import ApiKey
from app.api.error_schemas import ERROR_RESPONSES
from app.api.forms import FormSpec


def scoring_post(
    router: APIRouter, path: str, form: FormSpec, summary: str, **options: Any
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """``router.post`` for a scoring endpoint: the API key checked first, the form documented
    as the request body, every error status in the OpenAPI document (``responses`` to add
    more)."""
    options.setdefault("responses", ERROR_RESPONSES)
    return router.post(
        path,
        dependencies=[ApiKey],
        openapi_extra={"requestBody": form.request_body()},
        summary=summary,
        **options,
    )
