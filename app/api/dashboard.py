"""Routes for dashboards: many candidates against one reference, difference maps, the web page.

HTTP only, like ``routes.py``: the batch goes through ``ComparePipeline.compare_many`` (its
candidates enter the batcher together); a map is a decode plus ``app.difference_map`` on a
worker thread, never on the event loop.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, File, Request, UploadFile
from fastapi.responses import FileResponse, Response

from app.api.deps import ApiKey, PipelineDep, StateDep
from app.api.routes import (
    ERROR_RESPONSES,
    CandidateFile,
    MapKindField,
    MetricsField,
    ReferenceFile,
    SizePolicyField,
    error_item,
    read_upload,
    until_done,
)
from app.api.schemas import (
    BatchItemError,
    BatchResponse,
    CompareResponse,
    ErrorBody,
    compare_response,
)
from app.config import Settings, SizePolicy
from app.difference_map import MAP_RANGES, MapKind, difference_map_png
from app.errors import InputError, InvalidRequest
from app.imaging import prepare_pair
from app.pipeline import Comparison, parse_metrics

STATIC_DIR = Path(__file__).resolve().parent.parent / "static"
# The page loads nothing from elsewhere; maps arrive as data: URLs, previews as blob: URLs.
PAGE_CSP = (
    "default-src 'self'; img-src 'self' data: blob:; style-src 'self'; script-src 'self'; "
    "connect-src 'self'; object-src 'none'; base-uri 'self'; frame-ancestors 'none'"
)

router = APIRouter()

CandidatesField = Annotated[
    list[UploadFile],
    File(
        description="The candidate images, one file per repeated 'candidates' field (at most "
        "SIMSCORE_MAX_BATCH_CANDIDATES, default 64); each is compared to the reference.",
        min_length=1,
    ),
]

MAP_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "A viridis heat map, PNG, at the compared size (the reference's, after "
        "any downscale to SIMSCORE_MAX_SIDE). No legend: the colour range is fixed per kind "
        "and repeated in X-Map-Range.",
        "content": {"image/png": {"schema": {"type": "string", "format": "binary"}}},
        "headers": {
            "X-Map-Kind": {"description": "ssim or abs.", "schema": {"type": "string"}},
            "X-Map-Range": {
                "description": "'lo,hi': the values drawn as the first and the last colour.",
                "schema": {"type": "string", "example": "0.0,1.0"},
            },
        },
    },
    **ERROR_RESPONSES,
}


@router.post(
    "/compare/batch",
    response_model=BatchResponse,
    responses=ERROR_RESPONSES,
    dependencies=[ApiKey],
    summary="Score many candidates against one reference",
)
async def compare_batch(
    request: Request,
    state: StateDep,
    pipeline: PipelineDep,
    reference: ReferenceFile,
    candidates: CandidatesField,
    metrics: MetricsField = None,
    size_policy: SizePolicyField = None,
) -> BatchResponse:
    """Each candidate is scored as ``POST /compare`` would score it against the reference, and
    they enter the batcher together. ``results`` keeps the order given; a candidate that fails
    (not an image, too small, ...) becomes ``{"error": {"status", "detail"}}`` and the others
    are still scored. The request itself fails only for the reference, a bad field, too many
    candidates, or a full queue."""
    started = time.monotonic()
    settings = state.settings
    deadline = started + settings.request_timeout_s
    if len(candidates) > settings.max_batch_candidates:
        raise InvalidRequest(
            f"{len(candidates)} candidates; at most {settings.max_batch_candidates} per request "
            "(SIMSCORE_MAX_BATCH_CANDIDATES): split them over several requests"
        )
    wanted = parse_metrics(metrics)
    limit = settings.max_upload_bytes
    ref_bytes = await read_upload(reference, "reference", limit)
    uploads: list[bytes | InputError] = []
    for i, upload in enumerate(candidates):
        try:
            uploads.append(await read_upload(upload, f"candidates[{i}]", limit))
        except InputError as exc:
            uploads.append(exc)
    readable = [data for data in uploads if isinstance(data, bytes)]
    scored = iter(
        await until_done(
            request,
            pipeline.compare_many(
                ref_bytes, readable, metrics=wanted, size_policy=size_policy, deadline=deadline
            ),
            deadline,
            settings.request_timeout_s,
        )
    )
    total_ms = (time.monotonic() - started) * 1000
    results: list[CompareResponse | BatchItemError] = []
    for upload_or_error in uploads:
        item = upload_or_error if isinstance(upload_or_error, InputError) else next(scored)
        if isinstance(item, Comparison):
            results.append(compare_response(item, pipeline.model, total_ms))
        else:
            results.append(BatchItemError(error=ErrorBody(**error_item(request, item)["error"])))
    request.state.log = {
        "reference_bytes": len(ref_bytes),
        "candidates": len(candidates),
        "failed": sum(isinstance(r, BatchItemError) for r in results),
    }
    return BatchResponse(results=results)


@router.post(
    "/compare/map",
    response_class=Response,
    responses=MAP_RESPONSES,
    dependencies=[ApiKey],
    summary="A heat map of where a candidate differs from a reference",
)
async def compare_map(
    request: Request,
    state: StateDep,
    pipeline: PipelineDep,  # only to answer 503 while loading or draining, like /compare
    reference: ReferenceFile,
    candidate: CandidateFile,
    kind: MapKindField = "ssim",
    size_policy: SizePolicyField = None,
) -> Response:
    """The two images are decoded and sized exactly as ``POST /compare`` does; the PNG is the
    ``kind`` map at that size through the viridis colour map (ranges in docs/dashboard.md)."""
    settings = state.settings
    deadline = time.monotonic() + settings.request_timeout_s
    ref_bytes = await read_upload(reference, "reference", settings.max_upload_bytes)
    cand_bytes = await read_upload(candidate, "candidate", settings.max_upload_bytes)
    policy = size_policy or settings.default_size_policy
    png = await until_done(
        request,
        asyncio.to_thread(render_map, settings, ref_bytes, cand_bytes, kind, policy),
        deadline,
        settings.request_timeout_s,
    )
    lo, hi = MAP_RANGES[kind]
    return Response(
        png, media_type="image/png", headers={"X-Map-Kind": kind, "X-Map-Range": f"{lo},{hi}"}
    )


def render_map(
    settings: Settings, reference: bytes, candidate: bytes, kind: MapKind, policy: SizePolicy
) -> bytes:
    """Decode and size the pair as the pipeline does, then draw the map (blocking)."""
    ref, cand = prepare_pair(
        reference,
        candidate,
        max_pixels=settings.max_pixels,
        max_side=settings.max_side,
        size_policy=policy,
    )
    return difference_map_png(ref.tensor, cand.tensor, kind)


@router.get("/", include_in_schema=False)
async def index() -> FileResponse:
    """The web page (static files under /static; no build step, nothing from a CDN)."""
    return FileResponse(
        STATIC_DIR / "index.html",
        headers={"Content-Security-Policy": PAGE_CSP, "Cache-Control": "no-cache"},
    )
