"""The OpenAPI document as generated clients read it: plain operation ids (``compare``,
``compare_batch``, ...) and every multipart body a named schema in ``components``."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from fastapi.routing import APIRoute

from app.api.forms import FormSpec


def operation_id(route: APIRoute) -> str:
    """An operation's id is its route function's name: stable, and what a client calls."""
    return route.name


def install(app: FastAPI, forms: Iterable[FormSpec]) -> None:
    """Serve the document with the forms' schemas added to its components."""
    forms = tuple(forms)

    def document() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = get_openapi(
                title=app.title,
                version=app.version,
                description=app.description,
                routes=app.routes,
            )
            named = schema.setdefault("components", {}).setdefault("schemas", {})
            for form in forms:
                named.update(form.components())
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = document  # type: ignore[method-assign]
