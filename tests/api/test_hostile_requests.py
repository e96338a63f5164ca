"""Hostile and careless clients, in-process: refusals decided from the headers, body limits as
it streams, slow bodies and shutdown, and the headers and traces of every answer."""

from __future__ import annotations

import asyncio
import json
import logging
import tempfile
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr

from app.api.forms import MAX_TEXT_BYTES
from app.api.middleware import SECURITY_HEADERS
from app.config import Settings
from app.scoring import PairRequest, PairScores
from devtools import attacks
from devtools.attacks import KEY
from devtools.http import pair_files
from devtools.images import encode, photo
from devtools.servers import queue_of, running, running_client, service_of
from devtools.settings import settings_for
from tests.support.asgi import CHUNK, Body, RawRequest, detail, raw
from tests.support.models import ScoreFn, intercept_scoring

GOOD = encode(photo("astronaut", 64))  # 64 x 64
OTHER = encode(photo("coffee", 64))
KEYED = {"api_keys": [SecretStr(KEY)]}


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
    """A 4 MB file against a 1 MB cap: 413 once 1 MB of it arrived, not at its end. (Sent
    chunked: with its length declared, the route's own bound refuses it from the headers.)"""
    cap = 1_000_000
    parts = [attacks.file_part(field, 4 * cap)]
    async with running(make_settings(max_upload_bytes=cap)) as (app, _):
        request = raw(app, path, parts, content_length=None)
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
        data = {"metrics": "niqe" if form == "bad" else "mse"}
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

        def broken(real: ScoreFn) -> ScoreFn:
            def score(pairs: Sequence[PairRequest]) -> list[PairScores]:
                raise RuntimeError("simulated scorer bug")

            return score

        intercept_scoring(queue_of(app).scorer, broken)
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


@pytest.mark.parametrize(("path", "files"), [("/compare", 3), ("/compare/map", 3)])
async def test_a_body_declared_over_the_routes_own_bound_is_refused_from_the_headers(
    make_settings: Callable[..., Settings], path: str, files: int
) -> None:
    """100 MB declared on a route whose form holds at most three uploads of 20 MB: 413 at once,
    under the 128 MB global cap, naming the route's bound; no body byte is read."""
    settings = make_settings()
    parts = [attacks.file_part("reference", GOOD), attacks.file_part("candidate", 2_000_000)]
    async with running(settings) as (app, _):
        request = raw(app, path, parts, content_length=100_000_000)
        got, answer_headers, body = await request.answer()
    assert got == 413
    words = detail(body)
    assert f"POST {path}" in words and f"{files} file(s)" in words
    assert 3 * settings.max_upload_bytes < int(words.split()[3]) < 100_000_000
    assert answer_headers["connection"] == "close"
    assert request.pulled == 0
