"""``POST /compare``: one pair."""

from __future__ import annotations

import base64
import time

from fastapi import APIRouter, Request

from app.api.deps import AdmissionDep
from app.api.fields import (
    CANDIDATE,
    INCLUDE_MAP,
    MAP_KIND,
    MASK,
    METRICS,
    REFERENCE,
    SIZE_POLICY,
    compare_options,
)
from app.api.forms import FormLimits, FormSpec
from app.api.multipart import read_form
from app.api.routes import scoring_post
from app.api.schemas import CompareResponse, compare_response
from app.api.waiting import until_done
from app.vocabulary import MAP_KINDS, MapKind

router = APIRouter(tags=["compare"])
SUMMARY = "Score how alike a candidate image is to a reference"
FORM = FormSpec((REFERENCE, CANDIDATE, MASK, METRICS, SIZE_POLICY, INCLUDE_MAP, MAP_KIND))


@scoring_post(router, "/compare", FORM, SUMMARY, response_model=CompareResponse)
async def compare(request: Request, admitted: AdmissionDep) -> CompareResponse:
    """Upload a ``reference`` and a ``candidate``; the answer has the five scores, per-layer
    values, what was compared and what scored it."""
    started = time.monotonic()
    pipeline = admitted.pipeline
    form = await read_form(request, FORM, FormLimits.from_settings(pipeline.settings), admitted)
    options = compare_options(form)
    include_map = form.flag("include_map")
    kind: MapKind = form.choice("map_kind", MAP_KINDS) or "ssim"  # type: ignore[assignment]
    reference, candidate = form.file("reference"), form.file("candidate")
    comparison = await until_done(
        request,
        pipeline.compare(
            reference,
            candidate,
            options,
            deadline=admitted.deadline,
            budget=admitted.pixels,
        ),
        admitted,
    )
    png = None
    if include_map:
        png = await until_done(
            request,
            pipeline.render_map(
                comparison.reference,
                comparison.candidate,
                kind,
                comparison.mask,
                lane=admitted.pixels,
            ),
            admitted,
        )
    request.state.log = {
        "reference_bytes": len(reference),
        "candidate_bytes": len(candidate),
        "width": comparison.reference.width,
        "height": comparison.reference.height,
        "decode_ms": round(comparison.decode_ms, 2),
        "queue_ms": round(comparison.queue_ms, 2),
        "compute_ms": round(comparison.compute_ms, 2),
        "batch_size": comparison.batch_size,
    }
    response = compare_response(comparison, pipeline.model, (time.monotonic() - started) * 1000)
    if png is not None:
        response.map_png_base64 = base64.b64encode(png).decode("ascii")
    return response
