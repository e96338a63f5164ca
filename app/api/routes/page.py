"""The web page at ``/`` and the interactive API documentation at ``/docs``, served from this
package's files only (no CDN), each with a strict Content-Security-Policy."""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, FastAPI
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles
from swagger_ui_bundle import swagger_ui_path

STATIC_DIR = Path(__file__).resolve().parents[2] / "static"
SWAGGER_DIR = Path(__file__).resolve().parents[1] / "swagger"
# The page loads nothing from elsewhere; maps arrive as data: URLs, previews as blob: URLs.
PAGE_CSP = (
    "default-src 'self'; img-src 'self' data: blob:; style-src 'self'; script-src 'self'; "
    "connect-src 'self'; object-src 'none'; base-uri 'self'; frame-ancestors 'none'"
)
# Swagger UI sets inline styles on its elements; scripts still come from this origin only.
DOCS_CSP = (
    "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; "
    "script-src 'self'; connect-src 'self'; object-src 'none'; base-uri 'self'; "
    "frame-ancestors 'none'"
)

page = APIRouter(tags=["page"], include_in_schema=False)
docs = APIRouter(tags=["docs"], include_in_schema=False)


@page.get("/")
async def index() -> FileResponse:
    """The web page (static files under /static; no build step, nothing from a CDN)."""
    return FileResponse(
        STATIC_DIR / "index.html",
        headers={"Content-Security-Policy": PAGE_CSP, "Cache-Control": "no-cache"},
    )


@docs.get("/docs")
async def swagger_ui() -> FileResponse:
    return FileResponse(SWAGGER_DIR / "index.html", headers={"Content-Security-Policy": DOCS_CSP})


@docs.get("/docs/init.js")
async def swagger_init() -> FileResponse:
    return FileResponse(SWAGGER_DIR / "init.js", media_type="text/javascript")


def mount(app: FastAPI, *, with_docs: bool) -> None:
    """The page, its static files and (``SIMSCORE_DOCS``) the API documentation."""
    app.include_router(page)
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    if with_docs:
        app.include_router(docs)
        app.mount(
            "/docs/assets", StaticFiles(directory=Path(str(swagger_ui_path))), name="docs-assets"
        )
