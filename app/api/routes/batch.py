"""``POST /compare/batch``: many candidates against one reference, entering the batcher together."""

from __future__ import annotations

import time
from collections.abc import Iterator

from fastapi import APIRouter, Request

from app.api.deps import AdmissionDep
from app.api.error_schemas import BatchItemError, ErrorBody
from app.api.errors import error_item
from app.api.fields import (
    CANDIDATES,
    REFERENCE,
    SCORE_OPTIONS,
    THRESHOLDS,
    VIEWING,
    compare_options,
    verdict_thresholds,
)
from app.api.forms import FormLimits, FormSpec, Upload
from app.api.multipart import read_form
from app.api.routes import scoring_post
from app.api.schemas import BatchResponse, CompareResponse, compare_response
from app.api.verdicts import batch_summary
from app.api.waiting import until_done
from app.pipeline import Comparison
from app.scoring import ModelInfo
from app.verdicts import Thresholds

router = APIRouter(tags=["compare"])
SUMMARY = "Score many candidates against one reference"
FORM = FormSpec("CompareBatchForm", (REFERENCE, CANDIDATES, *SCORE_OPTIONS, THRESHOLDS, *VIEWING))


@scoring_post(router, "/compare/batch", FORM, SUMMARY, response_model=BatchResponse)
async def compare_batch(request: Request, admitted: AdmissionDep) -> BatchResponse:
    """Each candidate is scored as ``POST /compare`` would score it against the reference, and
    they enter the batcher together. ``results`` keeps the order given; a candidate that fails
    (not an image, too small, too large, ...) becomes ``{"error": {"status", "detail"}}`` and the
    others are still scored. With ``thresholds`` each scored item has its verdict and
    ``summary`` counts passed, failed and errors. The request itself fails only for the
    reference, a bad field, too many candidates (SIMSCORE_MAX_BATCH_CANDIDATES), or a full
    queue."""
    started = time.monotonic()
    pipeline = admitted.pipeline
    settings = pipeline.settings
    limits = FormLimits.from_settings(settings, candidates=settings.max_batch_candidates)
    form = await read_form(request, FORM, limits, admitted)
    thresholds = verdict_thresholds(form, settings.default_thresholds)
    options = compare_options(form, thresholds)
    reference = form.file("reference")
    uploads = form.files["candidates"]
    readable = [upload.data for upload in uploads if upload.error is None]
    scored = iter(
        await until_done(
            request,
            pipeline.compare_many(
                reference,
                readable,
                options,
                deadline=admitted.deadline,
                budget=admitted.pixels,
            ),
            admitted,
        )
    )
    total_ms = (time.monotonic() - started) * 1000
    results = [
        _item(request, upload, scored, pipeline.model, total_ms, thresholds) for upload in uploads
    ]
    verdicts = [r.verdict for r in results if isinstance(r, CompareResponse)]
    errors = len(results) - len(verdicts)
    request.state.log = {
        "reference_bytes": len(reference),
        "candidates": len(uploads),
        "failed": errors,
    }
    return BatchResponse(results=results, summary=batch_summary(thresholds, verdicts, errors))


def _item(
    request: Request,
    upload: Upload,
    scored: Iterator[Comparison | BaseException],
    model: ModelInfo,
    total_ms: float,
    thresholds: Thresholds | None,
) -> CompareResponse | BatchItemError:
    """One candidate's item: its scores and verdict, or its own error (counted, and logged if a
    500)."""
    outcome = upload.error if upload.error is not None else next(scored)
    if isinstance(outcome, Comparison):
        return compare_response(outcome, model, total_ms, thresholds)
    status, detail = error_item(request, outcome)
    return BatchItemError(error=ErrorBody(status=status, detail=detail))
