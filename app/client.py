"""Python client for simscore: ``SimscoreClient`` (sync) and ``AsyncSimscoreClient`` on httpx.

It needs only httpx (and Pillow when given PIL images), not torch::

    from app.client import SimscoreClient

    with SimscoreClient("http://simscore:8000", api_key="...") as client:
        result = client.compare("golden/hero.png", "renders/hero.png")
        print(result.scores.ssim, result.scores.vgg)

Images may be paths, bytes or PIL images. Errors raise ``SimscoreAPIError`` subclasses that
carry the server's ``detail``; 429 and 503 answers are retried with exponential backoff that
honours ``Retry-After``. See docs/dashboard.md for a job that scores a folder into a CSV.
"""

from __future__ import annotations

import asyncio
import base64
import email.utils
import io
import os
import random
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, Literal, TypeAlias

import httpx

if TYPE_CHECKING:
    from PIL import Image

ImageInput: TypeAlias = "str | os.PathLike[str] | bytes | bytearray | memoryview | Image.Image"
MapKind = Literal["ssim", "abs"]
SizePolicy = Literal["resize", "strict"]
RETRY_STATUSES = frozenset({429, 503})
DEFAULT_BASE_URL = "http://127.0.0.1:8000"


# -- errors ---------------------------------------------------------------------------------


class SimscoreAPIError(Exception):
    """The server answered an error; ``detail`` is its explanation, ``status`` the HTTP code.

    Also the item type of a failed candidate in ``compare_batch`` results."""

    def __init__(
        self,
        status: int,
        detail: str,
        *,
        request_id: str | None = None,
        retry_after_s: float | None = None,
    ) -> None:
        super().__init__(f"{status}: {detail}")
        self.status = status
        self.detail = detail
        self.request_id = request_id
        self.retry_after_s = retry_after_s


class InvalidImageError(SimscoreAPIError):
    """400 or 415: not an image the server can decode, or a refused format."""


class AuthenticationError(SimscoreAPIError):
    """401: missing or invalid API key."""


class PayloadTooLargeError(SimscoreAPIError):
    """413: an upload or image over the server's limits."""


class InvalidRequestError(SimscoreAPIError):
    """422: a missing or bad field, an image too small, sizes that differ under 'strict'."""


class OverloadedError(SimscoreAPIError):
    """429: the server's queue is full (raised once the retries are spent)."""


class UnavailableError(SimscoreAPIError):
    """503: loading or draining (raised once the retries are spent)."""


class DeadlineError(SimscoreAPIError):
    """504: the server gave up after SIMSCORE_REQUEST_TIMEOUT_S."""


class ServerError(SimscoreAPIError):
    """Any other status: a bug or a proxy in the way."""


_ERRORS: dict[int, type[SimscoreAPIError]] = {
    400: InvalidImageError,
    415: InvalidImageError,
    401: AuthenticationError,
    413: PayloadTooLargeError,
    422: InvalidRequestError,
    429: OverloadedError,
    503: UnavailableError,
    504: DeadlineError,
}


def api_error(
    status: int,
    detail: str,
    *,
    request_id: str | None = None,
    retry_after_s: float | None = None,
) -> SimscoreAPIError:
    """The typed error for ``status``."""
    kind = _ERRORS.get(status, ServerError)
    return kind(status, detail, request_id=request_id, retry_after_s=retry_after_s)


# -- results --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Scores:
    """The five scores; ``None`` where not asked for (and ``psnr`` for identical images)."""

    vgg: float | None
    style: float | None
    ssim: float | None
    mse: float | None
    psnr: float | None


@dataclass(frozen=True)
class CompareResult:
    """One scored pair, as ``POST /compare`` answers it (``raw`` is the whole JSON)."""

    scores: Scores
    vgg_layers: dict[str, float] | None
    style_layers: dict[str, float] | None
    width: int
    height: int
    resized: bool
    model: dict[str, str]
    timing_ms: dict[str, float]
    reference_cached: bool
    map_png: bytes | None
    raw: dict[str, Any] = field(repr=False)

    @classmethod
    def from_json(cls, body: Mapping[str, Any]) -> CompareResult:
        scores = body["scores"]
        layers = body.get("layers") or {}
        image = body["image"]
        encoded = body.get("map_png_base64")
        return cls(
            scores=Scores(*(scores.get(name) for name in ("vgg", "style", "ssim", "mse", "psnr"))),
            vgg_layers=layers.get("vgg"),
            style_layers=layers.get("style"),
            width=image["width"],
            height=image["height"],
            resized=image["resized"],
            model=dict(body["model"]),
            timing_ms=dict(body["timing_ms"]),
            reference_cached=bool(body.get("reference_cached", False)),
            map_png=base64.b64decode(encoded) if encoded else None,
            raw=dict(body),
        )


BatchItem: TypeAlias = "CompareResult | SimscoreAPIError"


@dataclass(frozen=True)
class DifferenceMap:
    """A heat map PNG and the values its first and last colours stand for."""

    png: bytes
    kind: str
    value_range: tuple[float, float]

    def save(self, path: str | os.PathLike[str]) -> None:
        Path(path).write_bytes(self.png)


# -- request building and answer parsing (shared by both clients) ----------------------------


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


Files: TypeAlias = list[tuple[str, tuple[str, bytes, str]]]


def _file(image: ImageInput, name: str) -> tuple[str, bytes, str]:
    filename = os.path.basename(os.fspath(image)) if isinstance(image, str | os.PathLike) else name
    return (filename or name, image_bytes(image), "application/octet-stream")


def _pair_files(reference: ImageInput, candidate: ImageInput) -> Files:
    return [
        ("reference", _file(reference, "reference")),
        ("candidate", _file(candidate, "candidate")),
    ]


def _fields(
    metrics: str | Iterable[str] | None, size_policy: SizePolicy | None, **extra: str
) -> dict[str, str]:
    data = dict(extra)
    if metrics is not None:
        data["metrics"] = metrics if isinstance(metrics, str) else ",".join(metrics)
    if size_policy is not None:
        data["size_policy"] = size_policy
    return data


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


def _raise_for_error(response: httpx.Response) -> None:
    if response.is_success:
        return
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


def _batch_items(body: Mapping[str, Any]) -> list[BatchItem]:
    items: list[BatchItem] = []
    for item in body["results"]:
        if "error" in item:
            error = item["error"]
            items.append(api_error(int(error["status"]), str(error["detail"])))
        else:
            items.append(CompareResult.from_json(item))
    return items


def _difference_map(response: httpx.Response, kind: str) -> DifferenceMap:
    lo, _, hi = response.headers.get("x-map-range", "0,1").partition(",")
    return DifferenceMap(
        response.content, response.headers.get("x-map-kind", kind), (float(lo), float(hi))
    )


@dataclass(frozen=True)
class RetryPolicy:
    """Retry 429 and 503 up to ``max_retries`` times. The wait before retry ``n`` (from 0) is the
    server's ``Retry-After`` when it sends one, else ``backoff_s * 2**n`` with +-25 % jitter;
    either is capped at ``max_wait_s``."""

    max_retries: int = 3
    backoff_s: float = 0.5
    max_wait_s: float = 30.0

    def wait_s(self, attempt: int, response: httpx.Response) -> float:
        told = retry_after_s(response.headers.get("retry-after"))
        if told is None:
            told = self.backoff_s * 2**attempt * random.uniform(0.75, 1.25)
        return min(told, self.max_wait_s)


@dataclass(frozen=True)
class _Request:
    path: str
    files: Files
    data: dict[str, str]


class _Base:
    """Settings and request building shared by the sync and async clients."""

    def __init__(
        self,
        base_url: str,
        api_key: str | None,
        timeout_s: float,
        retry: RetryPolicy | None,
        owns_client: bool,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.retry = retry or RetryPolicy()
        self._headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._timeout = httpx.Timeout(timeout_s)
        self._owns_client = owns_client  # a client passed in keeps its own timeout

    @staticmethod
    def _compare_request(
        reference: ImageInput,
        candidate: ImageInput,
        metrics: str | Iterable[str] | None,
        size_policy: SizePolicy | None,
        include_map: bool,
        map_kind: MapKind,
    ) -> _Request:
        extra = {"include_map": "true", "map_kind": map_kind} if include_map else {}
        return _Request(
            "/compare", _pair_files(reference, candidate), _fields(metrics, size_policy, **extra)
        )

    @staticmethod
    def _batch_request(
        reference: ImageInput,
        candidates: Sequence[ImageInput],
        metrics: str | Iterable[str] | None,
        size_policy: SizePolicy | None,
    ) -> _Request:
        files = [("reference", _file(reference, "reference"))]
        files += [("candidates", _file(c, f"candidate-{i}")) for i, c in enumerate(candidates)]
        return _Request("/compare/batch", files, _fields(metrics, size_policy))

    @staticmethod
    def _map_request(
        reference: ImageInput, candidate: ImageInput, kind: MapKind, size_policy: SizePolicy | None
    ) -> _Request:
        fields = _fields(None, size_policy, kind=kind)
        return _Request("/compare/map", _pair_files(reference, candidate), fields)


# -- the synchronous client -----------------------------------------------------------------


class SimscoreClient(_Base):
    """Blocking client. Use as a context manager, or call ``close()``.

    ``http_client`` lets you pass a configured ``httpx.Client`` (proxies, TLS, a test
    transport); the client then leaves closing it to you. ``sleep`` is how it waits between
    retries."""

    def __init__(
        self,
        base_url: str = DEFAULT_BASE_URL,
        *,
        api_key: str | None = None,
        timeout_s: float = 120.0,
        retry: RetryPolicy | None = None,
        http_client: httpx.Client | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        super().__init__(base_url, api_key, timeout_s, retry, http_client is None)
        self._http = http_client or httpx.Client(timeout=self._timeout)
        self._sleep = sleep

    def __enter__(self) -> SimscoreClient:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        if self._owns_client:
            self._http.close()

    def compare(
        self,
        reference: ImageInput,
        candidate: ImageInput,
        *,
        metrics: str | Iterable[str] | None = None,
        size_policy: SizePolicy | None = None,
        include_map: bool = False,
        map_kind: MapKind = "ssim",
    ) -> CompareResult:
        """Score ``candidate`` against ``reference`` (``POST /compare``)."""
        request = self._compare_request(
            reference, candidate, metrics, size_policy, include_map, map_kind
        )
        return CompareResult.from_json(self._post(request).json())

    def compare_batch(
        self,
        reference: ImageInput,
        candidates: Sequence[ImageInput],
        *,
        metrics: str | Iterable[str] | None = None,
        size_policy: SizePolicy | None = None,
    ) -> list[BatchItem]:
        """Score many candidates against one reference (``POST /compare/batch``); each item is a
        ``CompareResult`` or, for a candidate that failed alone, a ``SimscoreAPIError``."""
        request = self._batch_request(reference, candidates, metrics, size_policy)
        return _batch_items(self._post(request).json())

    def difference_map(
        self,
        reference: ImageInput,
        candidate: ImageInput,
        *,
        kind: MapKind = "ssim",
        size_policy: SizePolicy | None = None,
    ) -> DifferenceMap:
        """The heat map PNG of ``kind`` (``POST /compare/map``)."""
        request = self._map_request(reference, candidate, kind, size_policy)
        return _difference_map(self._post(request), kind)

    def _post(self, request: _Request) -> httpx.Response:
        attempt = 0
        while True:
            response = self._http.post(
                self.base_url + request.path,
                files=request.files,
                data=request.data,
                headers=self._headers,
            )
            if response.status_code in RETRY_STATUSES and attempt < self.retry.max_retries:
                self._sleep(self.retry.wait_s(attempt, response))
                attempt += 1
                continue
            _raise_for_error(response)
            return response


# -- the asynchronous client ----------------------------------------------------------------


class AsyncSimscoreClient(_Base):
    """The same API as ``SimscoreClient``, awaitable: ``async with AsyncSimscoreClient(...)``."""

    def __init__(
        self,
        base_url: str = DEFAULT_BASE_URL,
        *,
        api_key: str | None = None,
        timeout_s: float = 120.0,
        retry: RetryPolicy | None = None,
        http_client: httpx.AsyncClient | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        super().__init__(base_url, api_key, timeout_s, retry, http_client is None)
        self._http = http_client or httpx.AsyncClient(timeout=self._timeout)
        self._sleep = sleep

    async def __aenter__(self) -> AsyncSimscoreClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        if self._owns_client:
            await self._http.aclose()

    async def compare(
        self,
        reference: ImageInput,
        candidate: ImageInput,
        *,
        metrics: str | Iterable[str] | None = None,
        size_policy: SizePolicy | None = None,
        include_map: bool = False,
        map_kind: MapKind = "ssim",
    ) -> CompareResult:
        """Score ``candidate`` against ``reference`` (``POST /compare``)."""
        request = self._compare_request(
            reference, candidate, metrics, size_policy, include_map, map_kind
        )
        return CompareResult.from_json((await self._post(request)).json())

    async def compare_batch(
        self,
        reference: ImageInput,
        candidates: Sequence[ImageInput],
        *,
        metrics: str | Iterable[str] | None = None,
        size_policy: SizePolicy | None = None,
    ) -> list[BatchItem]:
        """See ``SimscoreClient.compare_batch``."""
        request = self._batch_request(reference, candidates, metrics, size_policy)
        return _batch_items((await self._post(request)).json())

    async def difference_map(
        self,
        reference: ImageInput,
        candidate: ImageInput,
        *,
        kind: MapKind = "ssim",
        size_policy: SizePolicy | None = None,
    ) -> DifferenceMap:
        """See ``SimscoreClient.difference_map``."""
        request = self._map_request(reference, candidate, kind, size_policy)
        return _difference_map(await self._post(request), kind)

    async def _post(self, request: _Request) -> httpx.Response:
        attempt = 0
        while True:
            response = await self._http.post(
                self.base_url + request.path,
                files=request.files,
                data=request.data,
                headers=self._headers,
            )
            if response.status_code in RETRY_STATUSES and attempt < self.retry.max_retries:
                await self._sleep(self.retry.wait_s(attempt, response))
                attempt += 1
                continue
            _raise_for_error(response)
            return response


__all__ = [
    "AsyncSimscoreClient",
    "AuthenticationError",
    "BatchItem",
    "CompareResult",
    "DeadlineError",
    "DifferenceMap",
    "ImageInput",
    "InvalidImageError",
    "InvalidRequestError",
    "OverloadedError",
    "PayloadTooLargeError",
    "RetryPolicy",
    "Scores",
    "ServerError",
    "SimscoreAPIError",
    "SimscoreClient",
    "UnavailableError",
    "api_error",
    "image_bytes",
    "retry_after_s",
]
