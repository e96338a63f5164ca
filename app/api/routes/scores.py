"""``GET /scores``: every score, its backbone, direction and smallest side, whether a request
gets it by default, and whether this server can compute it (and if not, why)."""

from __future__ import annotations

from fastapi import APIRouter

from app.api.deps import ApiKey, ServiceDep
from app.api.error_schemas import ErrorResponse
from app.api.score_schemas import ScoresResponse, scores_response
from app.errors import NotReady

router = APIRouter(tags=["scores"])


@router.get(
    "/scores",
    response_model=ScoresResponse,
    dependencies=[ApiKey],
    summary="Every score and whether this server can compute it",
    responses={
        401: {"model": ErrorResponse, "description": "Missing or invalid API key."},
        503: {
            "model": ErrorResponse,
            "description": "The model is still loading (what this server can compute is known "
            "once its weights are loaded); honour Retry-After.",
        },
    },
)
async def scores(service: ServiceDep) -> ScoresResponse:
    """Every score, in the order answers list them. ``available`` is false for a score whose
    backbone's weights were absent at start-up, and ``reason`` then names the setting and the
    ``simscore fetch-weights`` command. Needs the API key when the server sets keys, like the
    scoring endpoints it describes."""
    pipeline = service.pipeline
    if pipeline is None:
        raise NotReady("the model is still loading; retry shortly")
    return scores_response(pipeline.catalog)
