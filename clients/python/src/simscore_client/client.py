"""``SimscoreClient`` (blocking) and ``AsyncSimscoreClient``: thin loops over ``_base``.

Each method builds its request in ``_base``, sends it, retries 429/503 as ``RetryPolicy`` says
and parses the answer in ``_base``; only sending and sleeping differ between the two. The
keyword options of each method are typed in ``_base`` (``CompareOptions``, ``BatchOptions``,
``MapOptions``).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence
from types import TracebackType
from typing import TYPE_CHECKING

import httpx

from simscore_client._base import (
    DEFAULT_BASE_URL,
    SCORES_REQUEST,
    BaseClient,
    BatchOptions,
    CompareOptions,
    ImageInput,
    MapOptions,
    Request,
    RetryPolicy,
    TraceHeaders,
    batch_items,
    batch_request,
    compare_request,
    compare_result,
    difference_map,
    map_kind_of,
    map_request,
    raise_for_error,
    score_infos,
)
from simscore_client.results import BatchResults, CompareResult, DifferenceMap, ScoreInfo

if TYPE_CHECKING:
    from typing_extensions import Unpack


class SimscoreClient(BaseClient):
    """Blocking client. Use as a context manager, or call ``close()``.

    ``http_client`` lets you pass a configured ``httpx.Client`` (proxies, TLS, a test
    transport); closing it is then left to you. ``sleep`` is how it waits between retries.
    ``trace_headers`` gives each request the caller's trace (``traceparent``, ``tracestate``):
    ``simscore_client.tracing.current_trace_headers`` with OpenTelemetry, or your own."""

    def __init__(
        self,
        base_url: str = DEFAULT_BASE_URL,
        *,
        api_key: str | None = None,
        timeout_s: float = 120.0,
        retry: RetryPolicy | None = None,
        http_client: httpx.Client | None = None,
        sleep: Callable[[float], None] = time.sleep,
        trace_headers: TraceHeaders | None = None,
    ) -> None:
        super().__init__(base_url, api_key, timeout_s, retry, trace_headers)
        self._owns_http = http_client is None
        self._http = http_client or httpx.Client(timeout=self.timeout)
        self._sleep = sleep

    def __enter__(self) -> SimscoreClient:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        if self._owns_http:
            self._http.close()

    def compare(
        self, reference: ImageInput, candidate: ImageInput, **options: Unpack[CompareOptions]
    ) -> CompareResult:
        """Score ``candidate`` against ``reference`` (``POST /compare``). Options: ``scores``,
        ``size_policy``, ``include_map``, ``map_kind``, ``mask`` (where to compare: nonzero
        pixels; see the README's Scores section), ``thresholds`` (``"ssim>=0.92"`` or a
        list of conditions: the result's ``verdict``) and FLIP's viewing conditions (``ppd``, or
        ``distance_m``, ``monitor_width_m``, ``monitor_width_px``)."""
        return compare_result(self._post(compare_request(reference, candidate, **options)))

    def compare_batch(
        self,
        reference: ImageInput,
        candidates: Sequence[ImageInput],
        **options: Unpack[BatchOptions],
    ) -> BatchResults:
        """Score many candidates against one reference (``POST /compare/batch``); each item is a
        ``CompareResult`` or, for a candidate that failed alone, a ``SimscoreAPIError``; with
        thresholds, the list's ``summary`` counts passed, failed and errors.
        Options: ``scores``, ``size_policy``, ``mask``, ``thresholds``, FLIP's viewing
        conditions (as for ``compare``)."""
        return batch_items(self._post(batch_request(reference, candidates, **options)))

    def difference_map(
        self, reference: ImageInput, candidate: ImageInput, **options: Unpack[MapOptions]
    ) -> DifferenceMap:
        """The heat map PNG (``POST /compare/map``). Options: ``map_kind`` (``ssim``, ``abs``,
        ``lpips``, ``lpips_vgg``, ``flip``), ``size_policy``, ``mask``, FLIP's viewing
        conditions (as for ``compare``)."""
        response = self._post(map_request(reference, candidate, **options))
        return difference_map(response, map_kind_of(options))

    def scores(self) -> list[ScoreInfo]:
        """Every score the server knows (``GET /scores``): its backbone, direction, smallest
        side, whether it is a default, and whether this server can compute it (and why not)."""
        return score_infos(self._post(SCORES_REQUEST))

    def _post(self, request: Request) -> httpx.Response:
        attempt = 0
        while True:
            response = self._http.request(
                request.method,
                self.url(request),
                files=request.files or None,
                data=request.data or None,
                headers=self.request_headers(),
            )
            wait = self.retry.wait_s(attempt, response)
            if wait is None:
                return raise_for_error(response)
            self._sleep(wait)
            attempt += 1


class AsyncSimscoreClient(BaseClient):
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
        trace_headers: TraceHeaders | None = None,
    ) -> None:
        super().__init__(base_url, api_key, timeout_s, retry, trace_headers)
        self._owns_http = http_client is None
        self._http = http_client or httpx.AsyncClient(timeout=self.timeout)
        self._sleep = sleep

    async def __aenter__(self) -> AsyncSimscoreClient:
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        if self._owns_http:
            await self._http.aclose()

    async def compare(
        self, reference: ImageInput, candidate: ImageInput, **options: Unpack[CompareOptions]
    ) -> CompareResult:
        """See ``SimscoreClient.compare``."""
        return compare_result(await self._post(compare_request(reference, candidate, **options)))

    async def compare_batch(
        self,
        reference: ImageInput,
        candidates: Sequence[ImageInput],
        **options: Unpack[BatchOptions],
    ) -> BatchResults:
        """See ``SimscoreClient.compare_batch``."""
        return batch_items(await self._post(batch_request(reference, candidates, **options)))

    async def difference_map(
        self, reference: ImageInput, candidate: ImageInput, **options: Unpack[MapOptions]
    ) -> DifferenceMap:
        """See ``SimscoreClient.difference_map``."""
        response = await self._post(map_request(reference, candidate, **options))
        return difference_map(response, map_kind_of(options))

    async def scores(self) -> list[ScoreInfo]:
        """See ``SimscoreClient.scores``."""
        return score_infos(await self._post(SCORES_REQUEST))

    async def _post(self, request: Request) -> httpx.Response:
        attempt = 0
        while True:
            response = await self._http.request(
                request.method,
                self.url(request),
                files=request.files or None,
                data=request.data or None,
                headers=self.request_headers(),
            )
            wait = self.retry.wait_s(attempt, response)
            if wait is None:
                return raise_for_error(response)
            await self._sleep(wait)
            attempt += 1
