"""``create_app(settings)``: the service, its routers and middleware, tracing when the
OpenTelemetry variables ask for it, and the lifespan that owns the model (``Service.start``
before serving, ``Service.stop`` after, then tracing's last export)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware

from app import __version__
from app.api import errors, openapi
from app.api.middleware import RequestContextMiddleware
from app.api.routes import batch, compare, maps, operations, page, scores
from app.api.tracing import instrument
from app.config import Settings
from app.observability import Metrics
from app.service import Service
from app.tracing import Tracing

DESCRIPTION = """\
How alike two images look to a person: a VGG19 feature distance, a Gram-matrix style
distance, SSIM, MSE and PSNR by default; LPIPS (AlexNet, VGG16) and DISTS on request
(`scores=lpips,dists`), scored in batches on one model copy per network.

Upload a `reference` and a `candidate` to `POST /compare`; `GET /scores` lists every score and
whether this server can compute it. Errors are JSON with a `detail`.
"""


def create_app(settings: Settings | None = None, tracing: Tracing | None = None) -> FastAPI:
    """The ASGI app; tests pass their own ``Settings`` (and may pass a ``Tracing``; by default
    it is built from the ``OTEL_*`` variables: README, Tracing)."""
    settings = settings if settings is not None else Settings()
    metrics = Metrics()
    if tracing is None:
        tracing = Tracing.from_environment(dropped=metrics.trace_spans_dropped)
    service = Service(settings, metrics, tracing)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await service.start()
        try:
            yield
        finally:
            await service.stop()
            await asyncio.to_thread(tracing.shutdown)

    app = FastAPI(
        title="simscore",
        version=__version__,
        description=DESCRIPTION,
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
        openapi_url="/openapi.json" if settings.docs_enabled else None,
        generate_unique_id_function=openapi.operation_id,
    )
    app.state.service = service
    app.state.metrics = metrics
    app.state.tracing = tracing
    errors.install(app)
    for module in (compare, batch, maps, scores, operations):
        app.include_router(module.router)
    openapi.install(app, (compare.FORM, batch.FORM, maps.FORM))
    page.mount(app, with_docs=settings.docs_enabled)
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=["GET", "POST"],
            allow_headers=["Authorization", "Content-Type", "X-Request-ID"],
            expose_headers=["X-Request-ID", "Retry-After"],
        )
    app.add_middleware(RequestContextMiddleware, metrics=metrics)
    instrument(app, tracing)  # outermost: the server span covers every middleware
    return app
