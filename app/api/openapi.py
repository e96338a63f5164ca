"""The OpenAPI document as generated clients read it: plain operation ids (``compare``,
``compare_batch``, ``scores``, ...), every multipart body a named schema in ``components``, and
the names every schema shares (``ScoreName``, ``MapKind``, ``SizePolicy``) published once."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from fastapi.routing import APIRoute

from app.api.forms import FormSpec
from app.vocabulary import MAP_KINDS, SCORE_NAMES

# Enums every schema shares, published once: an inline schema of the same values refers to them.
SHARED_ENUMS: dict[str, dict[str, Any]] = {
    "ScoreName": {
        "title": "ScoreName",
        "type": "string",
        "enum": list(SCORE_NAMES),
        "description": "The name of a score, as 'scores', 'thresholds' and the answers write it "
        "(GET /scores describes each).",
    },
    "MapKind": {"title": "MapKind", "type": "string", "enum": list(MAP_KINDS)},
}


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
            for name, enum in SHARED_ENUMS.items():
                named[name] = {**named.get(name, {}), **enum}
            share_enums(schema)
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = document  # type: ignore[method-assign]


def share_enums(node: Any, inside: str | None = None) -> Any:
    """Replace, in place, every inline schema whose ``enum`` is one of ``SHARED_ENUMS``' with a
    reference to it (keeping its description), except in the component itself."""
    if isinstance(node, list):
        for i, item in enumerate(node):
            node[i] = share_enums(item, inside)
        return node
    if not isinstance(node, dict):
        return node
    for name, enum in SHARED_ENUMS.items():
        if node.get("enum") == enum["enum"] and inside != name:
            own = {k: v for k, v in node.items() if k == "description"}
            return {"$ref": f"#/components/schemas/{name}", **own}
    for key, value in node.items():
        node[key] = share_enums(value, key if key in SHARED_ENUMS else inside)
    return node
