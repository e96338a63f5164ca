"""Operations: liveness, readiness and Prometheus metrics."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from app.api.deps import ServiceDep, check_api_key
from app.api.error_schemas import ErrorResponse, Health

router = APIRouter(tags=["operations"])


@router.get("/healthz", response_model=Health, responses={503: {"model": Health}})
async def healthz(service: ServiceDep) -> Any:
    """Liveness: the batch worker is alive, its batches do not keep failing, and the device has
    not failed (a sticky CUDA error: the process is exiting to be restarted)."""
    problem = service.health()
    if problem is not None:
        return JSONResponse({"status": "unhealthy", "detail": problem}, 503)
    return Health(status="ok")


@router.get("/readyz", response_model=Health, responses={503: {"model": Health}})
async def readyz(service: ServiceDep) -> Any:
    """Readiness: the model is loaded and warm, and the server is not draining."""
    if service.phase == "ready":
        return Health(status="ready")
    if service.device_failure is not None:
        return JSONResponse(
            {"status": "failed", "detail": str(service.device_failure)},
            503,
            headers={"Retry-After": "1"},
        )
    detail = "model not ready" if service.phase == "loading" else "shutting down"
    status = "loading" if service.phase == "loading" else "draining"
    return JSONResponse({"status": status, "detail": detail}, 503, headers={"Retry-After": "1"})


@router.get(
    "/metrics",
    response_class=Response,
    responses={
        200: {"content": {"text/plain": {}}, "description": "Prometheus text format."},
        401: {
            "model": ErrorResponse,
            "description": "Missing or invalid API key (when keys are set, unless "
            "SIMSCORE_METRICS_REQUIRE_KEY=false).",
        },
    },
)
async def metrics(request: Request, service: ServiceDep) -> Response:
    """Prometheus metrics (text format)."""
    if service.settings.metrics_need_key:
        check_api_key(request, service)
    return Response(generate_latest(service.metrics.registry), media_type=CONTENT_TYPE_LATEST)
