"""What an error answer is: the body of every error, a failed item of a batch, liveness and
readiness, and the error statuses every scoring endpoint declares in the OpenAPI document."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class ErrorBody(BaseModel):
    """Why one candidate of a batch failed."""

    status: int = Field(
        description="The HTTP status /compare would have answered for this pair.", examples=[400]
    )
    detail: str = Field(
        description="What was wrong, in words a user can act on.",
        examples=["the candidate image is an empty file"],
    )


class BatchItemError(BaseModel):
    """A candidate that failed alone; the others are still scored."""

    error: ErrorBody = Field(description="Status and detail of this candidate's failure.")


class ErrorResponse(BaseModel):
    """Every error answer: a detail to act on and the request id of its log line."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "detail": "the candidate image is 8x8 px: VGG19 to relu5_1 pools four times "
                    "and SSIM needs an 11 px window; the smallest side must be at least 16 px",
                    "request_id": "5f0c2a8e9b1d4c7e8f6a3b2c1d0e9f8a",
                }
            ]
        }
    )

    detail: str = Field(description="What was wrong, in words a user can act on.")
    request_id: str | None = Field(
        None, description="The X-Request-ID of this request (also in the access log)."
    )


class Health(BaseModel):
    """Liveness or readiness."""

    status: str = Field(
        description="ok or ready; unhealthy, loading, draining or failed with status 503.",
        examples=["ready"],
    )
    detail: str | None = Field(None, description="Why it is not ok, when it is not.")


ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    400: {"model": ErrorResponse, "description": "Not an image we can decode."},
    401: {"model": ErrorResponse, "description": "Missing or invalid API key."},
    408: {"model": ErrorResponse, "description": "The body stalled (SIMSCORE_BODY_TIMEOUT_S)."},
    413: {"model": ErrorResponse, "description": "Upload, body or image too large."},
    415: {"model": ErrorResponse, "description": "An unsupported format (SVG, PDF, RLE BMP, ...)."},
    422: {"model": ErrorResponse, "description": "Missing field, bad value, too small."},
    429: {
        "model": ErrorResponse,
        "description": "Queue or request slots full; honour Retry-After.",
    },
    503: {"model": ErrorResponse, "description": "Loading or draining; honour Retry-After."},
    504: {"model": ErrorResponse, "description": "Past SIMSCORE_REQUEST_TIMEOUT_S."},
    500: {"model": ErrorResponse, "description": "A bug; request_id finds its log line."},
}
