"""HTTP routes: read the form, call the pipeline, shape the response. No model code here."""

from __future__ import annotations

import asyncio
import base64
import time
from collections.abc import Awaitable
from typing import Annotated, Any, Literal, TypeVar

from fastapi import APIRouter, File, Form, Request, Response, UploadFile
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from app.api.deps import ApiKey, PipelineDep, StateDep, require_api_key
from app.api.errors import error_response, map_exception
from app.api.schemas import CompareResponse, ErrorResponse, Health, compare_response
from app.difference_map import MapKind, difference_map_png
from app.errors import ClientGone, DeadlineExceeded, ImageTooLarge, NotAnImage
from app.pipeline import Comparison, parse_metrics

T = TypeVar("T")

router = APIRouter()

ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    400: {"model": ErrorResponse, "description": "Not an image we can decode."},
    401: {"model": ErrorResponse, "description": "Missing or invalid API key."},
    413: {"model": ErrorResponse, "description": "Upload or image too large."},
    415: {"model": ErrorResponse, "description": "An unsupported format (SVG, PDF, ...)."},
    422: {"model": ErrorResponse, "description": "Missing field, bad value, too small."},
    429: {"model": ErrorResponse, "description": "Queue full; honour Retry-After."},
    503: {"model": ErrorResponse, "description": "Loading or draining; honour Retry-After."},
    504: {"model": ErrorResponse, "description": "Past SIMSCORE_REQUEST_TIMEOUT_S."},
    500: {"model": ErrorResponse, "description": "A bug; request_id finds its log line."},
}


def omit_null(schema: dict[str, Any]) -> None:
    """Document an optional form field as absent-or-value: multipart has no null to send."""
    options = [option for option in schema.pop("anyOf", ()) if option.get("type") != "null"]
    if len(options) == 1:
        schema.update(options[0])
    elif options:
        schema["anyOf"] = options


ReferenceFile = Annotated[
    UploadFile, File(description="The reference (golden) image: PNG, JPEG, WebP, GIF, BMP, TIFF.")
]
CandidateFile = Annotated[UploadFile, File(description="The candidate image, compared to it.")]
MetricsField = Annotated[
    str | None,
    Form(
        description="Comma-separated subset of vgg, style, ssim, mse, psnr (default: all).",
        examples=["vgg,ssim"],
        json_schema_extra=omit_null,
    ),
]
SizePolicyField = Annotated[
    Literal["resize", "strict"] | None,
    Form(
        description="'resize' (default): a candidate of another size is resized to the "
        "reference's. 'strict': refuse pairs of different sizes.",
        examples=["resize"],
        json_schema_extra=omit_null,
    ),
]
MapKindField = Annotated[
    MapKind,
    Form(
        description="'ssim': the local SSIM (fixed colour range [0, 1]; 1 = identical, yellow). "
        "'abs': the mean absolute pixel difference over the channels (fixed range [0, 1]; "
        "0 = identical, dark purple). Viridis colour map; see docs/dashboard.md.",
        examples=["ssim"],
    ),
]
IncludeMapField = Annotated[
    bool,
    Form(
        description="Also return the map_kind difference map as base64 PNG in map_png_base64.",
        examples=[False],
    ),
]


@router.post(
    "/compare",
    response_model=CompareResponse,
    responses=ERROR_RESPONSES,
    dependencies=[ApiKey],
    summary="Score how alike a candidate image is to a reference",
)
async def compare(
    request: Request,
    state: StateDep,
    pipeline: PipelineDep,
    reference: ReferenceFile,
    candidate: CandidateFile,
    metrics: MetricsField = None,
    size_policy: SizePolicyField = None,
    include_map: IncludeMapField = False,
    map_kind: MapKindField = "ssim",
) -> CompareResponse:
    started = time.monotonic()
    deadline = started + state.settings.request_timeout_s
    wanted = parse_metrics(metrics)
    limit = state.settings.max_upload_bytes
    ref_bytes = await read_upload(reference, "reference", limit)
    cand_bytes = await read_upload(candidate, "candidate", limit)
    comparison = await until_done(
        request,
        pipeline.compare(
            ref_bytes, cand_bytes, metrics=wanted, size_policy=size_policy, deadline=deadline
        ),
        deadline,
        state.settings.request_timeout_s,
    )
    log_fields(request, comparison, len(ref_bytes), len(cand_bytes))
    png = None
    if include_map:
        png = await asyncio.to_thread(
            difference_map_png, comparison.reference.tensor, comparison.candidate.tensor, map_kind
        )
    total_ms = (time.monotonic() - started) * 1000
    response = compare_response(comparison, pipeline.model, total_ms)
    if png is not None:
        response.map_png_base64 = base64.b64encode(png).decode("ascii")
    return response


@router.get("/healthz", response_model=Health, responses={503: {"model": Health}})
async def healthz(state: StateDep) -> Any:
    """Liveness: the process answers and its batch worker thread is alive."""
    if state.pipeline is not None and not state.pipeline.batcher.alive:
        return JSONResponse({"status": "dead", "detail": "the batch worker died"}, 503)
    return Health(status="ok")


@router.get("/readyz", response_model=Health, responses={503: {"model": Health}})
async def readyz(state: StateDep) -> Any:
    """Readiness: the model is loaded and warm, and the server is not draining."""
    if state.draining:
        return JSONResponse({"status": "draining", "detail": "shutting down"}, 503)
    if not state.ready:
        return JSONResponse({"status": "loading", "detail": "model not ready"}, 503)
    return Health(status="ready")


@router.get(
    "/metrics",
    response_class=Response,
    responses={
        200: {"content": {"text/plain": {}}, "description": "Prometheus text format."},
        401: {
            "model": ErrorResponse,
            "description": "Missing or invalid API key (only with SIMSCORE_METRICS_REQUIRE_KEY).",
        },
    },
)
async def metrics(request: Request, state: StateDep) -> Response:
    """Prometheus metrics (text format)."""
    if state.settings.metrics_require_key:
        require_api_key(request, state)
    return Response(generate_latest(state.metrics.registry), media_type=CONTENT_TYPE_LATEST)


async def read_upload(upload: UploadFile, field: str, limit: int) -> bytes:
    """The upload's bytes, refusing empty files and files over ``limit``."""
    if upload.size is not None and upload.size > limit:
        raise ImageTooLarge(
            f"{field} is {upload.size} bytes; the limit is {limit} (SIMSCORE_MAX_UPLOAD_BYTES)"
        )
    data = await upload.read(limit + 1)
    if len(data) > limit:
        raise ImageTooLarge(f"{field} is over {limit} bytes (SIMSCORE_MAX_UPLOAD_BYTES)")
    if not data:
        raise NotAnImage(f"{field} is an empty file")
    return data


async def until_done(request: Request, work: Awaitable[T], deadline: float, timeout_s: float) -> T:
    """Await ``work`` unless the client goes away or the deadline passes (then cancel it)."""
    task = asyncio.ensure_future(work)
    watcher = asyncio.ensure_future(_disconnected(request))
    try:
        done, _ = await asyncio.wait(
            {task, watcher},
            timeout=max(0.0, deadline - time.monotonic()),
            return_when=asyncio.FIRST_COMPLETED,
        )
    finally:
        watcher.cancel()
    if task in done:
        return task.result()
    task.cancel()
    if watcher in done:
        raise ClientGone("the client closed the connection")
    raise DeadlineExceeded(f"no result within {timeout_s} s (SIMSCORE_REQUEST_TIMEOUT_S)")


async def _disconnected(request: Request) -> None:
    while True:
        message = await request.receive()
        if message["type"] == "http.disconnect":
            return


def log_fields(request: Request, c: Comparison, ref_bytes: int, cand_bytes: int) -> None:
    """Fields for the one access-log line per request."""
    request.state.log = {
        "reference_bytes": ref_bytes,
        "candidate_bytes": cand_bytes,
        "width": c.reference.width,
        "height": c.reference.height,
        "decode_ms": round(c.decode_ms, 2),
        "queue_ms": round(c.queue_ms, 2),
        "compute_ms": round(c.compute_ms, 2),
        "batch_size": c.batch_size,
    }


def error_item(request: Request, exc: BaseException) -> dict[str, Any]:
    """``{"error": {...}}`` for one failed item of a batch request."""
    mapped = map_exception(exc)
    error_response(request, mapped)  # counts the failure
    return {"error": {"status": mapped.status, "detail": mapped.detail}}
