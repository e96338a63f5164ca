"""Python client for simscore: ``SimscoreClient`` (sync) and ``AsyncSimscoreClient`` on httpx.

It needs only httpx (and Pillow when given PIL images), not torch::

    from simscore_client import SimscoreClient

    with SimscoreClient("http://simscore:8000", api_key="...") as client:
        result = client.compare("golden/hero.png", "renders/hero.png")
        print(result.scores.ssim, result.scores.vgg)
        checked = client.compare("golden/hero.png", "renders/hero.png", thresholds="ssim>=0.92")
        print(checked.verdict.passed, checked.verdict.failed)
        if any(s.name == "lpips" and s.available for s in client.scores()):
            lpips = client.compare("golden/hero.png", "renders/hero.png", scores="lpips,ssim")
            print(lpips.scores.lpips, lpips.scores.ssim)

Images may be paths, bytes or PIL images. Errors raise ``SimscoreAPIError`` subclasses that
carry the server's ``detail``; 429 and 503 answers are retried with exponential backoff that
honours ``Retry-After``.
"""

from simscore_client._base import ImageInput, RetryPolicy, image_bytes, retry_after_s
from simscore_client.client import AsyncSimscoreClient, SimscoreClient
from simscore_client.errors import (
    AuthenticationError,
    DeadlineError,
    InvalidImageError,
    InvalidRequestError,
    OverloadedError,
    PayloadTooLargeError,
    ServerError,
    SimscoreAPIError,
    UnavailableError,
    UploadTimeoutError,
    api_error,
)
from simscore_client.results import (
    BatchItem,
    BatchResults,
    BatchSummary,
    CompareResult,
    DifferenceMap,
    ScoreInfo,
    Scores,
    Verdict,
    csv_row_of,
)

__version__ = "0.1.0"

__all__ = [
    "AsyncSimscoreClient",
    "AuthenticationError",
    "BatchItem",
    "BatchResults",
    "BatchSummary",
    "CompareResult",
    "DeadlineError",
    "DifferenceMap",
    "ImageInput",
    "InvalidImageError",
    "InvalidRequestError",
    "OverloadedError",
    "PayloadTooLargeError",
    "RetryPolicy",
    "ScoreInfo",
    "Scores",
    "ServerError",
    "SimscoreAPIError",
    "SimscoreClient",
    "UnavailableError",
    "UploadTimeoutError",
    "Verdict",
    "api_error",
    "csv_row_of",
    "image_bytes",
    "retry_after_s",
]
