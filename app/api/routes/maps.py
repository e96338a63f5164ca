"""``POST /compare/map``: a heat map PNG of where a candidate differs from its reference."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response

from app.api.deps import AdmissionDep
from app.api.error_schemas import ERROR_RESPONSES
from app.api.fields import (
    CANDIDATE,
    KIND,
    MAP_KIND,
    MASK,
    REFERENCE,
    SIZE_POLICY,
    VIEWING,
    compare_options,
    map_kind,
)
from app.api.forms import FormLimits, FormSpec
from app.api.multipart import read_form
from app.api.routes import scoring_post
from app.api.waiting import until_done
from app.vocabulary import MAP_RANGES

router = APIRouter(tags=["maps"])
SUMMARY = "A heat map of where a candidate differs from a reference"
FORM = FormSpec(
    "CompareMapForm", (REFERENCE, CANDIDATE, MASK, MAP_KIND, KIND, SIZE_POLICY, *VIEWING)
)
MAP_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "A heat map, PNG (viridis; magma for flip), at the compared size (the "
        "reference's, after "
        "any downscale to SIMSCORE_MAX_SIDE). No legend: the colour range is fixed per kind "
        "and repeated in X-Map-Range.",
        "content": {"image/png": {"schema": {"type": "string", "format": "binary"}}},
        "headers": {
            "X-Map-Kind": {
                "description": "The map's kind (the MapKind schema).",
                "schema": {"type": "string"},
            },
            "X-Map-Range": {
                "description": "'lo,hi': the values drawn as the first and the last colour.",
                "schema": {"type": "string", "example": "0.0,1.0"},
            },
        },
    },
    **ERROR_RESPONSES,
}


@scoring_post(
    router, "/compare/map", FORM, SUMMARY, response_class=Response, responses=MAP_RESPONSES
)
async def compare_map(request: Request, admitted: AdmissionDep) -> Response:
    """The two images are decoded and sized exactly as ``POST /compare`` does; the PNG is the
    ``kind`` map at that size through the viridis colour map, FLIP's in magma (ranges in
    docs/dashboard.md). An ``lpips``, ``lpips_vgg`` or ``flip`` map is computed with that score
    on the batch worker."""
    pipeline = admitted.pipeline
    form = await read_form(request, FORM, FormLimits.from_settings(pipeline.settings), admitted)
    kind = map_kind(form)
    options = compare_options(form, map_kind=kind)
    png = await until_done(
        request,
        pipeline.difference_map(
            form.file("reference"),
            form.file("candidate"),
            kind,
            options,
            deadline=admitted.deadline,
            budget=admitted.pixels,
        ),
        admitted,
    )
    lo, hi = MAP_RANGES[kind]
    return Response(
        png, media_type="image/png", headers={"X-Map-Kind": kind, "X-Map-Range": f"{lo},{hi}"}
    )
