"""Hostile and careless clients against the in-process app: each test is one attack class of
issue 9 that the older tests (test_errors, test_access, test_formats, test_server) do not
already cover, and fails if its protection is removed.

Requests here are driven at the ASGI level (``RawRequest``) where a test must know how much of
the body the app pulled, pause a body half-way or have the client go away; the inputs come from
``tests.support.attacks``, which ``bench/attacks.py`` measures against a real server.
"""

from __future__ import annotations

import asyncio
import json
import logging
import tempfile
import threading
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image, ImageFile
from pydantic import SecretStr

from app.api.forms import MAX_TEXT_BYTES
from app.api.middleware import SECURITY_HEADERS
from app.config import Settings
from app.scoring import PairRequest, PairScores
from tests.support import attacks
from tests.support.attacks import CONTENT_TYPE, KEY, Part
from tests.support.http import pair_files, sample
from tests.support.images import encode, photo
from tests.support.servers import running, running_client, service_of
from tests.support.settings import settings_for

GOOD = encode(photo("astronaut", 64))  # 64 x 64
OTHER = encode(photo("coffee", 64))
CHUNK = 16 * 1024
KEYED = {"api_keys": [SecretStr(KEY)]}


class Body:
    """A request body fed chunk by chunk; it can stop at ``pause_at`` bytes until ``resume``
    is set, and tells the test when it got there (``paused``)."""

    def __init__(
        self, chunks: Iterable[bytes], *, pause_at: int | None = None, every_s: float = 0.0
    ) -> None:
        self.chunks = chunks
        self.pause_at = pause_at
        self.every_s = every_s
        self.paused = asyncio.Event()
        self.resume = asyncio.Event()

    async def __aiter__(self) -> AsyncIterator[bytes]:
        sent = 0
        for chunk in self.chunks:
            if self.pause_at is not None and sent >= self.pause_at and not self.resume.is_set():
                self.paused.set()
                await self.resume.wait()
            if self.every_s:
                await asyncio.sleep(self.every_s)
            sent += len(chunk)
            yield chunk


class RawRequest:
    """One ``POST`` driven at the ASGI level: the app pulls the body from ``body`` (``pulled``
    counts what it took), and the client goes away when the test sets ``gone``."""

    def __init__(
        self,
        app: Any,
        path: str,
        body: Body | Iterable[bytes],
        *,
        headers: Mapping[str, str] | None = None,
        content_length: int | None = None,
    ) -> None:
        self.pulled = 0
        self.body_done = False
        self.gone = asyncio.Event()
        self.messages: list[Mapping[str, Any]] = []
        self.body = body if isinstance(body, Body) else Body(body)
        self._chunks = aiter(self.body)
        raw_headers = [(b"content-type", CONTENT_TYPE.encode())]
        if content_length is not None:
            raw_headers.append((b"content-length", str(content_length).encode()))
        else:
            raw_headers.append((b"transfer-encoding", b"chunked"))
        for name, value in (headers or {}).items():
            raw_headers.append((name.lower().encode(), value.encode()))
        scope = {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": "POST",
            "scheme": "http",
            "path": path,
            "raw_path": path.encode(),
            "query_string": b"",
            "root_path": "",
            "headers": raw_headers,
            "client": ("127.0.0.1", 4321),
            "server": ("simscore.test", 80),
            "state": {},
        }
        self.task = asyncio.ensure_future(app(scope, self._receive, self._send))

    async def _receive(self) -> Mapping[str, Any]:
        if not self.body_done:
            try:
                chunk = await anext(self._chunks)
            except StopAsyncIteration:
                self.body_done = True
                return {"type": "http.request", "body": b"", "more_body": False}
            self.pulled += len(chunk)
            return {"type": "http.request", "body": chunk, "more_body": True}
        await self.gone.wait()
        return {"type": "http.disconnect"}

    async def _send(self, message: Mapping[str, Any]) -> None:
        self.messages.append(message)

    async def answer(self, timeout_s: float = 60) -> tuple[int, dict[str, str], bytes]:
        """Status, headers and body, once the app is done with the request."""
        await asyncio.wait_for(asyncio.shield(self.task), timeout_s)
        start = next(m for m in self.messages if m["type"] == "http.response.start")
        headers = {k.decode().lower(): v.decode() for k, v in start["headers"]}
        body = b"".join(m.get("body", b"") for m in self.messages if m["type"] != start["type"])
        return start["status"], headers, body


def raw(
    app: Any, path: str, parts: Sequence[Part], *, chunk: int = CHUNK, **options: Any
) -> RawRequest:
    """A ``RawRequest`` for a form, with its ``Content-Length`` (or ``content_length=None``
    for a chunked body) and optionally paused at ``pause_at`` bytes."""
    pause_at = options.pop("pause_at", None)
    length = options.pop("content_length", attacks.form_length(parts))
    body = Body(attacks.form_chunks(parts, chunk), pause_at=pause_at)
    return RawRequest(app, path, body, content_length=length, **options)


async def until(condition: Callable[[], bool], timeout_s: float = 30) -> None:
    for _ in range(int(timeout_s / 0.01)):
        if condition():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("condition not met in time")


def detail(body: bytes) -> str:
    found: str = json.loads(body)["detail"]
    return found


# -- refused from the headers: no body byte read, connection closed --------------------------

HEADER_REFUSALS: dict[str, tuple[dict[str, Any], dict[str, str], int | None, int, str]] = {
    # name: (settings, request headers, Content-Length override, status, words)
    **{
        name: (KEYED, headers, None, 401, "API key")
        for name, headers in attacks.AUTH_ATTEMPTS.items()
    },
    "body declared over the cap": (
        {"max_request_bytes": 1_000_000},
        {},
        128_000_001,
        413,
        "SIMSCORE_MAX_REQUEST_BYTES",
    ),
    "draining": ({}, {}, None, 503, "shutting down"),
}


@pytest.mark.parametrize("case", HEADER_REFUSALS)
@pytest.mark.parametrize("path", ["/compare", "/compare/batch", "/compare/map"])
async def test_refusals_from_the_headers_read_no_body_and_close_the_connection(
    make_settings: Callable[..., Settings], case: str, path: str
) -> None:
    overrides, headers, declared, status, words = HEADER_REFUSALS[case]
    field = "candidates" if path == "/compare/batch" else "candidate"
    parts = [attacks.file_part("reference", GOOD), attacks.file_part(field, 2_000_000)]
    async with running(make_settings(**overrides)) as (app, _):
        if case == "draining":
            service_of(app).start_draining()
        length = declared or attacks.form_length(parts)
        request = raw(app, path, parts, headers=headers, content_length=length)
        got, answer_headers, body = await request.answer()
    assert got == status
    assert words in detail(body)
    assert request.pulled == 0
    assert answer_headers["connection"] == "close"


async def test_an_upload_holds_its_request_slot_while_it_streams(
    make_settings: Callable[..., Settings],
) -> None:
    """With one slot, a second request is refused (429, nothing read) while the first is still
    uploading; the first then finishes normally and the slot is free again."""
    settings = make_settings(max_concurrent_requests=1)
    parts = attacks.padded(attacks.pair_parts(GOOD, OTHER, metrics="mse"), 200_000)
    async with running(settings) as (app, client):
        uploading = raw(app, "/compare", parts, pause_at=100_000)
        await _paused(uploading)
        refused = raw(app, "/compare", parts)
        status, headers, body = await refused.answer()
        assert not uploading.task.done()
        _resume(uploading)
        first, _, _ = await uploading.answer()
        after = await client.post(
            "/compare", files=pair_files(GOOD, OTHER), data={"metrics": "mse"}
        )
    assert status == 429
    assert "SIMSCORE_MAX_CONCURRENT_REQUESTS" in detail(body)
    assert headers["retry-after"] == "1"
    assert refused.pulled == 0
    assert first == 200
    assert after.status_code == 200


async def _paused(request: RawRequest) -> None:
    await asyncio.wait_for(request.body.paused.wait(), 30)


def _resume(request: RawRequest) -> None:
    request.body.resume.set()


# -- body limits while it streams -----------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "field"),
    [("/compare", "candidate"), ("/compare/map", "candidate"), ("/compare/batch", "reference")],
)
async def test_a_file_over_the_cap_is_refused_as_it_passes_it(
    make_settings: Callable[..., Settings], path: str, field: str
) -> None:
    """A declared 4 MB file against a 1 MB cap: 413 once 1 MB of it arrived, not at its end."""
    cap = 1_000_000
    parts = [attacks.file_part(field, 4 * cap)]
    async with running(make_settings(max_upload_bytes=cap)) as (app, _):
        request = raw(app, path, parts)
        status, headers, body = await request.answer()
    assert status == 413
    assert "SIMSCORE_MAX_UPLOAD_BYTES" in detail(body)
    assert cap < request.pulled <= cap + 2 * CHUNK
    assert headers["connection"] == "close"


async def test_a_text_field_over_the_cap_is_refused(make_settings: Callable[..., Settings]) -> None:
    parts = attacks.huge_text_field(GOOD, OTHER, size=1 << 20)
    async with running(make_settings()) as (app, _):
        request = raw(app, "/compare", parts, chunk=1024)
        status, _, body = await request.answer()
    assert status == 422
    assert f"over {MAX_TEXT_BYTES} bytes for a text field" in detail(body)
    assert request.pulled <= MAX_TEXT_BYTES + 2 * 1024 + 512


@pytest.mark.parametrize("attack", ["too many parts", "too many candidates"])
async def test_too_many_parts_are_refused_at_the_first_one_over(
    make_settings: Callable[..., Settings], attack: str
) -> None:
    if attack == "too many parts":
        path, words = "/compare", "parts"
        parts = attacks.too_many_parts(GOOD, OTHER, parts=1000)
    else:
        path, words = "/compare/batch", "SIMSCORE_MAX_BATCH_CANDIDATES"
        parts = attacks.too_many_candidates(GOOD, OTHER, count=100)
    async with running(make_settings(max_batch_candidates=4)) as (app, _):
        request = raw(app, path, parts)
        status, _, body = await request.answer()
    assert status == 422
    assert words in detail(body)
    assert request.pulled < attacks.form_length(parts) / 10


async def test_upload_memory_is_shared_by_every_request_in_flight(
    make_settings: Callable[..., Settings],
) -> None:
    """3 MB for all uploads together: a first request holds 2 MB (paused), a second is refused
    (429) once it would pass the 3 MB, and everything is given back when they end."""
    settings = make_settings(upload_memory_bytes=3_000_000)
    parts = attacks.padded(attacks.pair_parts(GOOD, OTHER, metrics="mse"), 2_000_000)
    async with running(settings) as (app, _):
        holding = raw(app, "/compare", parts, pause_at=2_000_000)
        await _paused(holding)
        refused = raw(app, "/compare", parts)
        status, headers, body = await refused.answer()
        _resume(holding)
        first, _, _ = await holding.answer()
        left = service_of(app).uploads.used
    assert status == 429
    assert "SIMSCORE_UPLOAD_MEMORY_BYTES" in detail(body)
    assert headers["retry-after"] == "1"
    assert 900_000 < refused.pulled <= 1_000_000 + 2 * CHUNK
    assert first == 200
    assert left == 0


async def test_uploads_never_touch_the_temporary_directory(
    make_settings: Callable[..., Settings], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A 15 MB upload, watched while it streams and after: nothing appears in the temporary
    directory and no temporary file is made (the old multipart reader spooled past 1 MB)."""
    spool = tmp_path / "tmp"
    spool.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(spool))
    made: list[str] = []
    for name in ("SpooledTemporaryFile", "TemporaryFile", "NamedTemporaryFile", "mkstemp"):
        real = getattr(tempfile, name)

        def recording(*args: Any, _real: Any = real, _name: str = name, **kwargs: Any) -> Any:
            made.append(_name)
            return _real(*args, **kwargs)

        monkeypatch.setattr(tempfile, name, recording)
    big = [5_000_000] * 3
    parts = attacks.batch_parts(GOOD, big, metrics="mse")
    async with running(make_settings()) as (app, _):
        request = raw(app, "/compare/batch", parts, pause_at=12_000_000, chunk=256 * 1024)
        await _paused(request)
        during = list(spool.iterdir())
        _resume(request)
        status, _, body = await request.answer()
    assert status == 200
    assert [item["error"]["status"] for item in json.loads(body)["results"]] == [400] * 3
    assert during == []
    assert list(spool.iterdir()) == []
    assert made == []


# -- decoding: abandoned work, the bounded pool, budgets, hostile files ------------------------


class DecodeSpy:
    """Wraps the pipeline's decode steps: counts calls, records the threads they ran on, and
    can hold the first call until ``release`` is set."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, *, hold_first: bool = False) -> None:
        import app.pipeline.compare as pipeline_module

        self.calls: list[tuple[str, str]] = []  # (step, thread name)
        self.entered = threading.Event()
        self.release = threading.Event()
        self._hold = hold_first
        self._lock = threading.Lock()
        for step in (
            "prepare_reference",
            "prepare_candidate",
            "prepare_mask",
            "difference_map_png",
        ):
            monkeypatch.setattr(
                pipeline_module, step, self._wrap(step, getattr(pipeline_module, step))
            )

    def _wrap(self, step: str, real: Callable[..., Any]) -> Callable[..., Any]:
        def spied(*args: Any, **kwargs: Any) -> Any:
            with self._lock:
                self.calls.append((step, threading.current_thread().name))
                first = len(self.calls) == 1
            if first and self._hold:
                self.entered.set()
                self.release.wait(30)
            return real(*args, **kwargs)

        return spied


async def test_abandoned_requests_stop_costing_decode_time(
    make_settings: Callable[..., Settings], monkeypatch: pytest.MonkeyPatch
) -> None:
    """One decode thread, held by a first request; four more requests are uploaded and wait for
    it, then their clients go away. Their decodes never run: only the first request's two
    images are decoded."""
    spy = DecodeSpy(monkeypatch, hold_first=True)
    parts = attacks.pair_parts(GOOD, OTHER, metrics="mse")
    async with running(make_settings(decode_threads=1)) as (app, client):
        pipeline = service_of(app).pipeline
        assert pipeline is not None
        first = asyncio.ensure_future(
            client.post("/compare", files=pair_files(GOOD, OTHER), data={"metrics": "mse"})
        )
        await asyncio.to_thread(spy.entered.wait, 10)
        abandoned = [raw(app, "/compare", parts) for _ in range(4)]
        # Each has its reference decode queued behind the held one.
        await until(lambda: pipeline._decode_pool._work_queue.qsize() == 4)
        for request in abandoned:
            request.gone.set()
        statuses = [(await request.answer())[0] for request in abandoned]
        spy.release.set()
        answer = await first
        cancelled = sample(app, "simscore_request_failures_total", {"reason": "cancelled"})
    assert answer.status_code == 200
    assert statuses == [499] * 4
    assert cancelled == 4
    assert [step for step, _ in spy.calls] == ["prepare_reference", "prepare_candidate"]


async def test_maps_are_drawn_and_decoded_on_the_bounded_pool(
    make_settings: Callable[..., Settings], monkeypatch: pytest.MonkeyPatch
) -> None:
    """/compare/map and include_map (each with a mask): every image, the mask and the map are
    decoded or drawn on the decode pool's threads, never on the event loop."""
    spy = DecodeSpy(monkeypatch)
    region = np.zeros((64, 64), np.uint8)
    region[8:56, 8:56] = 255
    mask = encode(region)
    async with running(make_settings(decode_threads=2)) as (_, client):
        drawn = await client.post("/compare/map", files=pair_files(GOOD, OTHER, mask))
        embedded = await client.post(
            "/compare", files=pair_files(GOOD, OTHER, mask), data={"include_map": "true"}
        )
    assert drawn.status_code == 200, drawn.text
    assert embedded.status_code == 200, embedded.text
    assert embedded.json()["map_png_base64"]
    steps = sorted(step for step, _ in spy.calls)
    assert steps == sorted(
        ["prepare_reference", "prepare_candidate", "prepare_mask", "difference_map_png"] * 2
    )
    assert all(thread.startswith("simscore-decode") for _, thread in spy.calls), spy.calls


async def test_the_pixel_budget_covers_a_batch(make_settings: Callable[..., Settings]) -> None:
    """Room for three 64x64 images per request: the reference and two of five candidates are
    decoded, the other three fail alone with 413."""
    settings = make_settings(max_request_pixels=3 * 64 * 64)
    async with running(settings) as (_, client):
        response = await client.post(
            "/compare/batch",
            files=[("reference", ("r.png", GOOD, "image/png"))]
            + [("candidates", (f"c{i}.png", OTHER, "image/png")) for i in range(5)],
            data={"metrics": "mse"},
        )
    assert response.status_code == 200
    results = response.json()["results"]
    refused = [r["error"] for r in results if "error" in r]
    assert len(refused) == 3
    assert all(e["status"] == 413 for e in refused)
    assert all("SIMSCORE_MAX_REQUEST_PIXELS=12288" in e["detail"] for e in refused)


@pytest.mark.parametrize("name", list(attacks.HOSTILE_FILES))
async def test_hostile_files_are_refused_before_any_pixel_is_decoded(
    make_settings: Callable[..., Settings], monkeypatch: pytest.MonkeyPatch, name: str
) -> None:
    hostile = attacks.HOSTILE_FILES[name]
    data = hostile.build()  # (before the spy: building may read photographs)
    loads: list[str] = []
    real_load = ImageFile.ImageFile.load

    def counting_load(self: ImageFile.ImageFile) -> Any:
        loads.append(self.format or "")
        return real_load(self)

    monkeypatch.setattr(ImageFile.ImageFile, "load", counting_load)
    async with running(make_settings()) as (_, client):
        response = await client.post("/compare", files=pair_files(data, OTHER))
    assert response.status_code == hostile.status, response.text
    assert hostile.words in response.json()["detail"]
    assert loads == []


@pytest.mark.parametrize(
    "kind",
    [
        "gif",
        "png-16-bit",
        "tiff-float",
    ],
)
async def test_a_tiny_file_declaring_a_huge_canvas_is_decoded_small(
    make_settings: Callable[..., Settings], monkeypatch: pytest.MonkeyPatch, kind: str
) -> None:
    """A blank 6000x6000 canvas in a few bytes (the GIF: 35) is scored at SIMSCORE_MAX_SIDE,
    and no float image larger than twice that per side is made (not 6000x6000 floats)."""
    import app.imaging.decode as decode_module

    made: list[tuple[int, ...]] = []
    real = decode_module._to_tensor

    def recording(image: Image.Image, what: str) -> Any:
        tensor = real(image, what)
        made.append(tuple(tensor.shape))
        return tensor

    monkeypatch.setattr(decode_module, "_to_tensor", recording)
    canvas = attacks.HUGE_CANVASES[kind]()
    async with running(make_settings(max_side=1024)) as (_, client):
        response = await client.post(
            "/compare", files=pair_files(canvas, canvas), data={"metrics": "mse"}
        )
    assert len(canvas) < 250_000
    assert response.status_code == 200, response.text
    image = response.json()["image"]
    assert image["reference"] == {"width": 6000, "height": 6000}
    assert (image["width"], image["height"]) == (1024, 1024)
    assert len(made) == 2
    assert all(shape[1] * shape[2] <= (2 * 1024) ** 2 for shape in made), made


async def test_a_slow_decode_does_not_hold_up_other_requests(
    make_settings: Callable[..., Settings], monkeypatch: pytest.MonkeyPatch
) -> None:
    """One upload stuck inside Pillow (as the million-chunk PNG once was) while another request
    is decoded and answered: no lock is shared between decodes."""
    slow = encode(photo("chelsea", 64))
    entered, release = threading.Event(), threading.Event()
    real_open = Image.open

    def open_(fp: Any, *args: Any, **kwargs: Any) -> Any:
        if hasattr(fp, "getvalue") and fp.getvalue() == slow:
            entered.set()
            release.wait(30)
        return real_open(fp, *args, **kwargs)

    monkeypatch.setattr(Image, "open", open_)
    async with running(make_settings(decode_threads=2)) as (_, client):
        stuck = asyncio.ensure_future(
            client.post("/compare", files=pair_files(slow, OTHER), data={"metrics": "mse"})
        )
        await asyncio.to_thread(entered.wait, 10)
        other = await asyncio.wait_for(
            client.post("/compare", files=pair_files(GOOD, OTHER), data={"metrics": "mse"}), 20
        )
        still_stuck = not stuck.done()
        release.set()
        assert (await stuck).status_code == 200
    assert other.status_code == 200
    assert still_stuck


# -- slow bodies and shutdown -----------------------------------------------------------------


async def test_a_body_that_never_ends_is_cut_at_the_request_deadline(
    make_settings: Callable[..., Settings],
) -> None:
    """A chunked body trickling 1 kB every 50 ms (never pausing long enough for the body
    timeout) for ever: 504 at SIMSCORE_REQUEST_TIMEOUT_S."""
    settings = make_settings(request_timeout_s=1.0, body_timeout_s=0.5)

    def endless() -> Iterator[bytes]:
        head = next(attacks.endless_file())
        yield head
        while True:
            yield b"\0" * 1024

    async with running(settings) as (app, _):
        started = asyncio.get_running_loop().time()
        request = RawRequest(app, "/compare", Body(endless(), every_s=0.05))
        status, headers, body = await request.answer(timeout_s=10)
        elapsed = asyncio.get_running_loop().time() - started
    assert status == 504
    assert "SIMSCORE_REQUEST_TIMEOUT_S" in detail(body)
    assert 0.9 <= elapsed < 5
    assert headers["connection"] == "close"


async def test_an_upload_admitted_before_a_drain_is_finished(
    make_settings: Callable[..., Settings],
) -> None:
    """SIGTERM's first step (stop admitting) while an upload is half-way: that request gets its
    scores, a new one gets 503 without a byte read."""
    parts = attacks.padded(attacks.pair_parts(GOOD, OTHER, metrics="mse"), 100_000)
    async with running(make_settings()) as (app, _):
        uploading = raw(app, "/compare", parts, pause_at=50_000)
        await _paused(uploading)
        service_of(app).start_draining()
        refused = raw(app, "/compare", parts)
        refused_status, _, _ = await refused.answer()
        _resume(uploading)
        status, _, body = await uploading.answer()
    assert status == 200
    assert json.loads(body)["scores"]["mse"] > 0
    assert refused_status == 503
    assert refused.pulled == 0


# -- headers and traces -----------------------------------------------------------------------


def _raise(*args: object, **kwargs: object) -> None:
    raise RuntimeError("simulated bug")


SURFACE = {
    # name: (method, path, auth, form, expected status)
    "page": ("GET", "/", False, None, 200),
    "static file": ("GET", "/static/app.js", False, None, 200),
    "docs": ("GET", "/docs", False, None, 200),
    "docs script": ("GET", "/docs/init.js", False, None, 200),
    "openapi": ("GET", "/openapi.json", False, None, 200),
    "healthz": ("GET", "/healthz", False, None, 200),
    "metrics": ("GET", "/metrics", True, None, 200),
    "metrics without key": ("GET", "/metrics", False, None, 401),
    "not found": ("GET", "/nope", False, None, 404),
    "wrong method": ("GET", "/compare", True, None, 405),
    "scores": ("POST", "/compare", True, "good", 200),
    "no key": ("POST", "/compare", False, "good", 401),
    "bad field": ("POST", "/compare", True, "bad", 422),
    "not an image": ("POST", "/compare", True, "garbage", 400),
    "too large": ("POST", "/compare", True, "large", 413),
    "a bug": ("POST", "/compare", True, "bug", 500),
}


@pytest.fixture(scope="module")
def keyed_app(weights_file: Path) -> Iterator[TestClient]:
    settings = settings_for(weights_file, docs="on", max_upload_bytes=50_000, **KEYED)
    with running_client(settings) as client:
        yield client


@pytest.mark.parametrize("name", SURFACE)
def test_every_answer_carries_the_security_headers(
    keyed_app: TestClient, monkeypatch: pytest.MonkeyPatch, name: str
) -> None:
    method, path, auth, form, status = SURFACE[name]
    headers = attacks.bearer() if auth else {}
    if form is None:
        response = keyed_app.request(method, path, headers=headers)
    else:
        if form == "bug":
            monkeypatch.setattr("app.api.routes.compare.compare_options", _raise)
        files = {
            "good": pair_files(GOOD, OTHER),
            "bad": pair_files(GOOD, OTHER),
            "garbage": pair_files(GOOD, b"not an image at all"),
            "large": pair_files(GOOD, b"\0" * 60_000),
            "bug": pair_files(GOOD, OTHER),
        }[form]
        data = {"metrics": "lpips" if form == "bad" else "mse"}
        response = keyed_app.request(method, path, headers=headers, files=files, data=data)
    assert response.status_code == status, response.text
    for header, value in SECURITY_HEADERS:
        assert response.headers[header.decode()] == value.decode(), header
    assert response.headers["x-request-id"]
    if response.headers["content-type"].startswith("text/html"):
        csp = response.headers["content-security-policy"]
        assert "default-src 'self'" in csp and "frame-ancestors 'none'" in csp


async def test_a_failed_batch_item_is_logged_with_its_traceback_and_request_id(
    make_settings: Callable[..., Settings], caplog: pytest.LogCaptureFixture
) -> None:
    async with running(make_settings()) as (app, client):
        pipeline = service_of(app).pipeline
        assert pipeline is not None

        def broken(pairs: Sequence[PairRequest]) -> list[PairScores]:
            raise RuntimeError("simulated scorer bug")

        pipeline.scorer.score = broken  # type: ignore[method-assign]
        with caplog.at_level(logging.ERROR, logger="simscore.errors"):
            response = await client.post(
                "/compare/batch",
                files=[("reference", ("r.png", GOOD, "image/png"))]
                + [("candidates", (f"c{i}.png", OTHER, "image/png")) for i in range(2)],
                headers={"X-Request-ID": "board-7"},
            )
    assert response.status_code == 200
    errors = [item["error"] for item in response.json()["results"]]
    assert [e["status"] for e in errors] == [500, 500]
    assert all(e["detail"].startswith("internal error") for e in errors)
    logged = [r for r in caplog.records if r.name == "simscore.errors"]
    assert len(logged) == 2
    for record in logged:
        assert "board-7" in record.getMessage()
        assert record.exc_info is not None
        assert "simulated scorer bug" in str(record.exc_info[1])


# -- found while measuring ----------------------------------------------------------------------


@pytest.mark.parametrize("layout", ["contiguous", "channels-last"])
def test_the_mse_of_a_pair_does_not_depend_on_its_batch(layout: str) -> None:
    """``mse`` is documented (and checked by the load test) as exact, whatever the batch."""
    import torch

    from app.metrics.mse import mse

    generator = torch.Generator().manual_seed(0)
    x = torch.rand(8, 3, 224, 224, generator=generator)
    y = (x + 0.03 * torch.randn(x.shape, generator=generator)).clamp(0, 1)
    if layout == "channels-last":
        x, y = (t.contiguous(memory_format=torch.channels_last) for t in (x, y))
    threads = torch.get_num_threads()
    torch.set_num_threads(2)  # (one thread splits nothing: the difference needs two)
    try:
        alone = [mse(x[i : i + 1], y[i : i + 1]).item() for i in range(8)]
        moved = [
            (n, i)
            for n in range(2, 9)
            for i, value in enumerate(mse(x[:n], y[:n]).tolist())
            if value != alone[i]
        ]
    finally:
        torch.set_num_threads(threads)
    assert moved == []


async def test_decoded_memory_is_bounded_across_requests(
    make_settings: Callable[..., Settings],
) -> None:
    """Tiny uploads that decode large: past SIMSCORE_DECODED_MEMORY_BYTES a candidate is refused
    alone (429), and the bytes are given back when its request ends."""
    from tests.support.http import batch_files
    from tests.support.images import photo_png

    reference = photo_png("chelsea")  # 96 x 64: 73,728 bytes as float32 RGB
    settings = make_settings(decoded_memory_bytes=4 * 96 * 64 * 3 * 4)
    async with running(settings) as (_, client):
        response = await client.post(
            "/compare/batch", files=batch_files(reference, [reference] * 5)
        )
        again = await client.post("/compare/batch", files=batch_files(reference, [reference]))
    statuses = [item.get("error", {}).get("status", 200) for item in response.json()["results"]]
    assert statuses == [200, 200, 200, 429, 429]
    assert "SIMSCORE_DECODED_MEMORY_BYTES" in response.json()["results"][3]["error"]["detail"]
    assert again.status_code == 200
