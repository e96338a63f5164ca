"""``create_app(settings)``: routes, middleware and the lifespan that owns the model.

Lifespan: load the weights, place the model, warm up at the largest batch size, start the batch
worker, and only then report ready. On shutdown: stop admitting (503), finish every accepted
request within ``SIMSCORE_DRAIN_TIMEOUT_S``, stop the worker.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware
from fastapi.staticfiles import StaticFiles

from app import __version__
from app.api import dashboard, errors
from app.api.deps import ServiceState
from app.api.middleware import RequestContextMiddleware
from app.api.routes import router
from app.config import Settings
from app.engine import build_scorer
from app.observability import Metrics
from app.pipeline import ComparePipeline

log = logging.getLogger(__name__)

DESCRIPTION = """\
How alike two images look to a person: a VGG19 feature distance, a Gram-matrix style
distance, SSIM, MSE and PSNR, scored in batches on one model copy.

Upload a `reference` and a `candidate` to `POST /compare`. Errors are JSON with a `detail`.
"""
FORM_OVERHEAD_BYTES = 1 << 20


def build_pipeline(settings: Settings, metrics: Metrics) -> ComparePipeline:
    """Load and warm the model (blocking: run it off the event loop)."""
    scorer, model = build_scorer(settings, metrics)
    if settings.warmup_sides:
        log.info("warming up at batch %d for %s px", settings.max_batch_size, settings.warmup_sides)
        scorer.warm_up(settings.warmup_shapes, settings.max_batch_size)
    return ComparePipeline(settings, scorer, model, metrics)


def create_app(settings: Settings | None = None) -> FastAPI:
    """The ASGI app; tests pass their own ``Settings``."""
    settings = settings if settings is not None else Settings()
    metrics = Metrics()
    state = ServiceState(settings=settings, metrics=metrics)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        state.draining = False  # a restarted lifespan admits again
        pipeline = await asyncio.to_thread(build_pipeline, settings, metrics)
        pipeline.start()
        state.pipeline = pipeline
        state.ready = True
        metrics.ready.set(1)
        log.info("simscore ready")
        try:
            yield
        finally:
            state.start_draining()
            drained = await pipeline.batcher.drain(settings.drain_timeout_s)
            state.drained_cleanly = drained
            if not drained:
                log.warning("drain timed out after %.1f s", settings.drain_timeout_s)
            pipeline.close()
            log.info("simscore stopped")

    app = FastAPI(
        title="simscore",
        version=__version__,
        description=DESCRIPTION,
        lifespan=lifespan,
    )
    app.state.simscore = state
    app.state.service = state
    app.state.metrics = metrics
    errors.install(app)
    app.include_router(router)
    app.include_router(dashboard.router)
    app.mount("/static", StaticFiles(directory=dashboard.STATIC_DIR), name="static")
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=["GET", "POST"],
            allow_headers=["Authorization", "Content-Type", "X-Request-ID"],
            expose_headers=["X-Request-ID", "Retry-After"],
        )

    def body_limit(path: str) -> int | None:
        uploads = 1 + settings.max_batch_candidates if path == "/compare/batch" else 2
        return uploads * settings.max_upload_bytes + FORM_OVERHEAD_BYTES

    app.add_middleware(RequestContextMiddleware, metrics=metrics, body_limit=body_limit)
    return app
