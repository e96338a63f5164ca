"""What the sync and async clients share: request building, answer parsing, the retry policy.

Each client only sends requests and sleeps its own way (``client.py``).
"""

from __future__ import annotations

import email.utils
import io
import os
import random
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeAlias, TypedDict

import httpx

from simscore_client.errors import api_error
from simscore_client.results import (
    BatchItem,
    BatchResults,
    BatchSummary,
    CompareResult,
    DifferenceMap,
    ScoreInfo,
)
from simscore_client.vocabulary import MapKind, SizePolicy

if TYPE_CHECKING:
    from PIL import Image
    from typing_extensions import Unpack  # typing.Unpack from Python 3.11 on

ImageInput: TypeAlias = "str | os.PathLike[str] | bytes | bytearray | memoryview | Image.Image"
# Headers that carry the caller's trace to the server (W3C ``traceparent``, ``tracestate``),
# asked for afresh for every request: ``simscore_client.tracing.current_trace_headers``.
TraceHeaders: TypeAlias = "Callable[[], Mapping[str, str]]"
ScoreNames: TypeAlias = "str | Iterable[str] | None"  # "vgg,ssim" or ["vgg", "ssim"]
# "vgg<=0.05,ssim>=0.92" or ["vgg<=0.05", "ssim>=0.92"]; "" (or []) turns the server's default off
Conditions: TypeAlias = "str | Iterable[str] | None"
RETRY_STATUSES = frozenset({429, 503})
DEFAULT_BASE_URL = "http://127.0.0.1:8000"
Files: TypeAlias = list[tuple[str, tuple[str, bytes, str]]]


def image_bytes(image: ImageInput) -> bytes:
    """Bytes to upload: a file's content, the bytes themselves, or a PIL image as PNG."""
    if isinstance(image, bytes | bytearray | memoryview):
        return bytes(image)
    if isinstance(image, str | os.PathLike):
        return Path(image).read_bytes()
    if hasattr(image, "save") and hasattr(image, "mode"):  # a PIL image, without importing PIL
        buffer = io.BytesIO()
        image.save(buffer, format="PNG")
        return buffer.getvalue()
    raise TypeError(f"an image must be a path, bytes or a PIL image, not {type(image).__name__}")


def retry_after_s(value: str | None) -> float | None:
    """Seconds from a ``Retry-After`` header: delta-seconds or an HTTP date."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


@dataclass(frozen=True)
class RetryPolicy:
    """Retry 429 and 503 up to ``max_retries`` times. The wait before retry ``n`` (from 0) is the
    server's ``Retry-After`` when it sends one, else ``backoff_s * 2**n`` with +-25 % jitter;
    either is capped at ``max_wait_s``."""

    max_retries: int = 3
    backoff_s: float = 0.5
    max_wait_s: float = 30.0

    def wait_s(self, attempt: int, response: httpx.Response) -> float | None:
        """Seconds to wait before retrying, or None when ``response`` is final."""
        if response.status_code not in RETRY_STATUSES or attempt >= self.max_retries:
            return None
        told = retry_after_s(response.headers.get("retry-after"))
        if told is None:
            told = self.backoff_s * 2**attempt * random.uniform(0.75, 1.25)
        return min(told, self.max_wait_s)


@dataclass(frozen=True)
class Request:
    """One request, ready to send (and to send again on a retry): a POST of a form, or a GET."""

    path: str
    files: Files
    data: dict[str, str]
    method: str = "POST"


SCORES_REQUEST = Request("/scores", [], {}, "GET")


def _file(image: ImageInput, name: str) -> tuple[str, bytes, str]:
    filename = os.path.basename(os.fspath(image)) if isinstance(image, str | os.PathLike) else name
    return (filename or name, image_bytes(image), "application/octet-stream")


def _scores(options: Mapping[str, object]) -> ScoreNames:
    """The ``scores`` option, or its old name ``metrics`` (one of the two)."""
    if options.get("scores") is not None and options.get("metrics") is not None:
        raise TypeError("give scores= or its old name metrics=, not both")
    chosen = options.get("scores", options.get("metrics"))
    return chosen  # type: ignore[return-value]


def map_kind_of(options: Mapping[str, object]) -> MapKind:
    """The ``map_kind`` option, or its old name ``kind`` (default ssim)."""
    if options.get("map_kind") is not None and options.get("kind") is not None:
        raise TypeError("give map_kind= or its old name kind=, not both")
    chosen = options.get("map_kind") or options.get("kind") or "ssim"
    return chosen  # type: ignore[return-value]


def _fields(
    scores: ScoreNames,
    size_policy: SizePolicy | None,
    thresholds: Conditions = None,
    **extra: str,
) -> dict[str, str]:
    data = dict(extra)
    if scores is not None:
        data["scores"] = scores if isinstance(scores, str) else ",".join(scores)
    if size_policy is not None:
        data["size_policy"] = size_policy
    if thresholds is not None:
        data["thresholds"] = thresholds if isinstance(thresholds, str) else ",".join(thresholds)
    return data


def _viewing(options: Mapping[str, Any]) -> dict[str, str]:
    """The viewing-condition fields given, as form text (``repr``: the shortest round trip)."""
    given = {name: options.get(name) for name in VIEWING_FIELDS}
    return {name: repr(float(value)) for name, value in given.items() if value is not None}


def _pair_files(reference: ImageInput, candidate: ImageInput) -> Files:
    return [
        ("reference", _file(reference, "reference")),
        ("candidate", _file(candidate, "candidate")),
    ]


def _mask(files: Files, mask: ImageInput | None) -> Files:
    return files if mask is None else [*files, ("mask", _file(mask, "mask"))]


class ViewingOptions(TypedDict, total=False):
    """FLIP's viewing conditions: ``ppd`` (pixels per degree) or any of the observer's distance
    and the monitor's width in metres and in pixels (the others keep the reference tool's
    defaults: 0.7 m, 0.7 m, 3840 px). Only ``flip`` uses them."""

    ppd: float
    distance_m: float
    monitor_width_m: float
    monitor_width_px: float


VIEWING_FIELDS = ("ppd", "distance_m", "monitor_width_m", "monitor_width_px")


class CompareOptions(ViewingOptions, total=False):
    """Keyword options of ``compare``: which scores, the size policy, the heat map, a mask, the
    thresholds of the verdict (``metrics`` is the old name of ``scores``), FLIP's viewing
    conditions."""

    scores: ScoreNames
    metrics: ScoreNames
    size_policy: SizePolicy | None
    include_map: bool
    map_kind: MapKind
    mask: ImageInput | None
    thresholds: Conditions


class BatchOptions(ViewingOptions, total=False):
    """Keyword options of ``compare_batch`` (``metrics`` is the old name of ``scores``)."""

    scores: ScoreNames
    metrics: ScoreNames
    size_policy: SizePolicy | None
    mask: ImageInput | None
    thresholds: Conditions


class MapOptions(ViewingOptions, total=False):
    """Keyword options of ``difference_map`` (``kind`` is the old name of ``map_kind``)."""

    map_kind: MapKind
    kind: MapKind
    size_policy: SizePolicy | None
    mask: ImageInput | None


def compare_request(
    reference: ImageInput, candidate: ImageInput, **options: Unpack[CompareOptions]
) -> Request:
    files = _pair_files(reference, candidate)
    extra = _viewing(options)
    if options.get("include_map"):
        extra |= {"include_map": "true", "map_kind": map_kind_of(options)}
    fields = _fields(
        _scores(options), options.get("size_policy"), options.get("thresholds"), **extra
    )
    return Request("/compare", _mask(files, options.get("mask")), fields)


def batch_request(
    reference: ImageInput, candidates: Sequence[ImageInput], **options: Unpack[BatchOptions]
) -> Request:
    files = [("reference", _file(reference, "reference"))]
    files += [("candidates", _file(c, f"candidate-{i}")) for i, c in enumerate(candidates)]
    fields = _fields(
        _scores(options), options.get("size_policy"), options.get("thresholds"), **_viewing(options)
    )
    return Request("/compare/batch", _mask(files, options.get("mask")), fields)


def map_request(
    reference: ImageInput, candidate: ImageInput, **options: Unpack[MapOptions]
) -> Request:
    files = _pair_files(reference, candidate)
    fields = _fields(
        None, options.get("size_policy"), map_kind=map_kind_of(options), **_viewing(options)
    )
    return Request("/compare/map", _mask(files, options.get("mask")), fields)


def raise_for_error(response: httpx.Response) -> httpx.Response:
    """``response`` if it succeeded, else the typed error with the server's detail."""
    if response.is_success:
        return response
    try:
        body = response.json()
        detail = str(body.get("detail", "")) if isinstance(body, dict) else str(body)
        request_id = body.get("request_id") if isinstance(body, dict) else None
    except ValueError:
        detail, request_id = response.text[:500], None
    raise api_error(
        response.status_code,
        detail or response.reason_phrase,
        request_id=request_id or response.headers.get("x-request-id"),
        retry_after_s=retry_after_s(response.headers.get("retry-after")),
    )


def score_infos(response: httpx.Response) -> list[ScoreInfo]:
    """``GET /scores``: every score, in the order the answers list them."""
    return [ScoreInfo.from_json(item) for item in response.json()["scores"]]


def compare_result(response: httpx.Response) -> CompareResult:
    return CompareResult.from_json(response.json())


def batch_items(response: httpx.Response) -> BatchResults:
    body = response.json()
    items: list[BatchItem] = []
    for item in body["results"]:
        if "error" in item:
            error: Mapping[str, Any] = item["error"]
            items.append(api_error(int(error["status"]), str(error["detail"])))
        else:
            items.append(CompareResult.from_json(item))
    return BatchResults(items, BatchSummary.from_json(body.get("summary")))


def difference_map(response: httpx.Response, kind: str) -> DifferenceMap:
    lo, _, hi = response.headers.get("x-map-range", "0,1").partition(",")
    return DifferenceMap(
        response.content, response.headers.get("x-map-kind", kind), (float(lo), float(hi))
    )


class BaseClient:
    """Settings shared by the sync and async clients."""

    def __init__(
        self,
        base_url: str,
        api_key: str | None,
        timeout_s: float,
        retry: RetryPolicy | None,
        trace_headers: TraceHeaders | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.retry = retry or RetryPolicy()
        self.headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self.timeout = httpx.Timeout(timeout_s)
        self.trace_headers = trace_headers

    def url(self, request: Request) -> str:
        return self.base_url + request.path

    def request_headers(self) -> dict[str, str]:
        """The headers of one request: the API key, and the caller's trace if it gives one."""
        if self.trace_headers is None:
            return self.headers
        own = {name.lower() for name in self.headers}
        traced = {k: v for k, v in self.trace_headers().items() if k.lower() not in own}
        return {**traced, **self.headers}
