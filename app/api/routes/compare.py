"""``POST /compare``: one pair."""

from __future__ import annotations

import base64
import time

from fastapi import APIRouter, Request

from app.api.deps import AdmissionDep
from app.api.fields import (
    CANDIDATE,
    INCLUDE_MAP,
    INCLUDED_MAP_KIND,
    REFERENCE,
    SCORE_OPTIONS,
    THRESHOLDS,
    VIEWING,
    compare_options,
    map_kind,
    verdict_thresholds,
)
from app.api.forms import FormLimits, FormSpec
from app.api.multipart import read_form
from app.api.routes import scoring_post
from app.api.schemas import CompareResponse, compare_response
from app.api.waiting import until_done

router = APIRouter(tags=["compare"])
SUMMARY = "Score how alike a candidate image is to a reference"
FORM = FormSpec(
    "CompareForm",
    (
        REFERENCE,
        CANDIDATE,
        *SCORE_OPTIONS,
        INCLUDE_MAP,
        INCLUDED_MAP_KIND,
        THRESHOLDS,
        *VIEWING,
    ),
)


@scoring_post(router, "/compare", FORM, SUMMARY, response_model=CompareResponse)
async def compare(request: Request, admitted: AdmissionDep) -> CompareResponse:
    """Upload a ``reference`` and a ``candidate``; the answer has the scores asked for (the
    default five when ``scores`` names none), per-layer values, what was compared and what
    scored it, and with ``thresholds`` its verdict."""
    started = time.monotonic()
    pipeline = admitted.pipeline
    form = await read_form(request, FORM, FormLimits.from_settings(pipeline.settings), admitted)
    thresholds = verdict_thresholds(form, pipeline.settings.default_thresholds)
    include_map = form.flag("include_map")
    kind = map_kind(form)
    options = compare_options(form, thresholds, kind if include_map else None)
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
            pipeline.render_map(comparison, kind, lane=admitted.pixels),
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
    total_ms = (time.monotonic() - started) * 1000
    response = compare_response(comparison, pipeline.model, total_ms, thresholds)
    if png is not None:
        response.map_png_base64 = base64.b64encode(png).decode("ascii")
    return response
