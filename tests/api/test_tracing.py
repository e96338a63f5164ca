"""Traces of requests through the app (README: Tracing), exported over OTLP/HTTP to a real
receiver that decodes them: concurrent ``/compare`` requests have one server span each, with
``read``, ``decode``, ``queue`` and ``compute`` under it; a ``batch`` span of several pairs is
linked to every request it served; a caller's ``traceparent`` is continued; the service is
named from ``OTEL_SERVICE_NAME``; each access log line carries its trace and span ids. Errors
mark their spans. Without OTEL variables nothing is traced and no exporter thread runs; a
collector that hangs or is down never holds or fails a request (its spans are counted as
dropped)."""

from __future__ import annotations

import asyncio
import json
import logging
import os
from collections.abc import Callable, Iterator

import httpx
import pytest
from simscore_client import AsyncSimscoreClient
from simscore_client.tracing import fixed_trace_headers

from app.config import Settings
from devtools.http import pair_files, sample
from devtools.images import PHOTOS, distort, encode, photo, solid_png
from devtools.otlp import OtlpReceiver, Traces, otel_env
from devtools.servers import free_port, running
from tests.tracing.support import export_threads

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT_ID = "00f067aa0ba902b7"
STAGES = ("read", "decode", "queue", "compute")


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch) -> Callable[[dict[str, str]], None]:
    """Replace every OTEL_* variable of this process with the given ones."""
    for name in list(os.environ):
        if name.startswith("OTEL_"):
            monkeypatch.delenv(name)

    def set_env(values: dict[str, str]) -> None:
        for name, value in values.items():
            monkeypatch.setenv(name, value)

    return set_env


@pytest.fixture
def receiver() -> Iterator[OtlpReceiver]:
    with OtlpReceiver() as running_receiver:
        yield running_receiver


def _pair(index: int) -> list[tuple[str, tuple[str, bytes, str]]]:
    image = photo(PHOTOS[index % len(PHOTOS)], 64)
    return pair_files(encode(image), encode(distort(image, "noise", seed=index)))


def _access_lines(caplog: pytest.LogCaptureFixture) -> dict[str, dict[str, object]]:
    lines = [json.loads(r.getMessage()) for r in caplog.records if r.name == "simscore.access"]
    return {str(line["request_id"]): line for line in lines}


async def test_concurrent_requests_are_traced_across_their_batch(
    make_settings: Callable[..., Settings],
    env: Callable[[dict[str, str]], None],
    receiver: OtlpReceiver,
    caplog: pytest.LogCaptureFixture,
) -> None:
    env(otel_env(receiver, OTEL_SERVICE_NAME="simscore-under-test"))
    caplog.set_level(logging.INFO, logger="simscore.access")
    async with running(make_settings(max_wait_ms=1000)) as (_, client):
        traced_client = AsyncSimscoreClient(
            "http://simscore.test",
            http_client=client,
            trace_headers=lambda: fixed_trace_headers(f"00-{TRACE_ID}-{PARENT_ID}-01", "k=v"),
        )
        image = photo("coffee", 64)
        answers = await asyncio.gather(
            *(client.post("/compare", files=_pair(i)) for i in range(3)),
            traced_client.compare(encode(image), encode(distort(image, "blur"))),
        )
    # the lifespan's end exported every span
    posted = answers[:3]
    assert all(isinstance(a, httpx.Response) and a.status_code == 200 for a in posted)
    traces = Traces(receiver.spans)
    requests = traces.requests()
    assert len(requests) == 4
    assert {span.resource["service.name"] for span in receiver.spans} == {"simscore-under-test"}
    for request in requests:
        assert request.name == "POST /compare"
        assert request.attributes["http.route"] == "/compare"
        assert request.attributes["http.status_code"] == 200
        for stage in STAGES:
            assert traces.children(request, stage), f"{stage} is not under {request.name}"
        decoded = traces.children(request, "decode")
        assert sorted(span.attributes["simscore.image.role"] for span in decoded) == [
            "candidate",
            "reference",
        ]
        assert {span.attributes["simscore.image.format"] for span in decoded} == {"PNG"}
        assert {span.attributes["simscore.image.width"] for span in decoded} == {64}
        assert traces.batches_of(request), "every request is linked from a batch"
    assert max(span.attributes["simscore.batch_size"] for span in traces.named("batch")) >= 2
    for batch in traces.named("batch"):
        assert batch.parent_span_id == ""
        assert len(batch.links) == batch.attributes["simscore.batch_size"]
        queued = {(s.trace_id, s.span_id) for s in traces.named("queue")}
        assert set(batch.links) <= queued, "a batch links the queue spans of its pairs"
    (continued,) = [r for r in requests if r.trace_id == TRACE_ID]
    assert continued.parent_span_id == PARENT_ID
    lines = _access_lines(caplog)
    assert len(lines) == 4
    by_trace = {request.trace_id: request for request in requests}
    for line in lines.values():
        request = by_trace[str(line["trace_id"])]
        assert line["span_id"] == request.span_id
    for answer in posted:
        assert isinstance(answer, httpx.Response)
        assert lines[answer.headers["x-request-id"]]["trace_id"] in by_trace


async def test_an_error_marks_its_stage_and_its_request(
    make_settings: Callable[..., Settings],
    env: Callable[[dict[str, str]], None],
    receiver: OtlpReceiver,
) -> None:
    env(otel_env(receiver))
    async with running(make_settings()) as (_, client):
        files = pair_files(encode(photo("rocket", 64)), b"not an image at all")
        answer = await client.post("/compare", files=files)
    assert answer.status_code == 400
    traces = Traces(receiver.spans)
    (request,) = traces.requests()
    assert request.attributes["error.type"] == "app.errors.NotAnImage"
    assert request.attributes["http.status_code"] == 400
    assert request.status == "UNSET", "a 4xx leaves the server span's status unset (HTTP rules)"
    failed = [s for s in traces.children(request, "decode") if s.status == "ERROR"]
    assert len(failed) == 1
    assert failed[0].attributes["simscore.image.role"] == "candidate"
    assert failed[0].attributes["simscore.image.format"] == "unknown"
    assert failed[0].attributes["error.type"] == "app.errors.NotAnImage"
    assert "exception" in failed[0].events
    assert not traces.named("queue"), "nothing was queued"


async def test_maps_are_drawn_in_their_span_and_a_mask_decoded_in_its_own(
    make_settings: Callable[..., Settings],
    env: Callable[[dict[str, str]], None],
    receiver: OtlpReceiver,
) -> None:
    env(otel_env(receiver))
    async with running(make_settings()) as (_, client):
        included = await client.post("/compare", files=_pair(0), data={"include_map": "true"})
        mask = ("mask", ("mask.png", solid_png(64, 64, (255, 255, 255)), "image/png"))
        files = [*_pair(1), mask]
        alone = await client.post("/compare/map", files=files, data={"map_kind": "abs"})
    assert included.status_code == alone.status_code == 200
    traces = Traces(receiver.spans)
    kinds = {}
    for request in traces.requests():
        (drawn,) = traces.children(request, "map")
        kinds[request.attributes["http.route"]] = drawn.attributes["simscore.map_kind"]
        assert drawn.attributes["simscore.image.width"] == 64
    assert kinds == {"/compare": "ssim", "/compare/map": "abs"}
    (masked,) = [s for s in traces.named("decode") if s.attributes["simscore.image.role"] == "mask"]
    assert masked.attributes["simscore.image.compared_width"] == 64


async def test_probes_and_metrics_are_not_traced(
    make_settings: Callable[..., Settings],
    env: Callable[[dict[str, str]], None],
    receiver: OtlpReceiver,
) -> None:
    env(otel_env(receiver))
    async with running(make_settings()) as (_, client):
        for path in ("/healthz", "/readyz", "/metrics"):
            assert (await client.get(path)).status_code == 200
        assert (await client.post("/compare", files=_pair(2))).status_code == 200
    assert [request.name for request in Traces(receiver.spans).requests()] == ["POST /compare"]


async def test_without_otel_variables_nothing_is_traced_and_no_exporter_runs(
    make_settings: Callable[..., Settings],
    env: Callable[[dict[str, str]], None],
    receiver: OtlpReceiver,
    caplog: pytest.LogCaptureFixture,
) -> None:
    env({})
    caplog.set_level(logging.INFO, logger="simscore.access")
    before = export_threads()
    async with running(make_settings()) as (app, client):
        assert not app.state.tracing.enabled
        answer = await client.post("/compare", files=_pair(3))
        assert answer.status_code == 200
        assert export_threads() == before
    line = _access_lines(caplog)[answer.headers["x-request-id"]]
    assert "trace_id" not in line and "span_id" not in line
    assert receiver.exports == 0


async def test_a_collector_that_hangs_never_holds_a_request(
    make_settings: Callable[..., Settings],
    env: Callable[[dict[str, str]], None],
    receiver: OtlpReceiver,
) -> None:
    env(
        otel_env(
            receiver,
            OTEL_BSP_MAX_QUEUE_SIZE="8",
            OTEL_BSP_MAX_EXPORT_BATCH_SIZE="2",
            OTEL_BSP_SCHEDULE_DELAY="10",
        )
    )
    receiver.hold()
    async with running(make_settings(max_wait_ms=0)) as (app, client):
        statuses = [(await client.post("/compare", files=_pair(i))).status_code for i in range(4)]
        assert statuses == [200] * 4
        assert receiver.waiting == 1 and receiver.exports == 0, "answered while the export hung"
        dropped = sample(app, "simscore_trace_spans_dropped_total", {"reason": "queue_full"})
        assert dropped > 0
        receiver.release()
    assert receiver.exports > 0


async def test_a_collector_that_is_down_never_fails_a_request(
    make_settings: Callable[..., Settings],
    env: Callable[[dict[str, str]], None],
) -> None:
    nothing_listens = f"http://127.0.0.1:{free_port()}"
    env({"OTEL_EXPORTER_OTLP_ENDPOINT": nothing_listens, "OTEL_EXPORTER_OTLP_TIMEOUT": "1"})
    env({"OTEL_BSP_SCHEDULE_DELAY": "10"})
    async with running(make_settings()) as (app, client):
        for i in range(2):
            assert (await client.post("/compare", files=_pair(i))).status_code == 200
        for _ in range(3000):  # the exporter gives up after its timeout (1 s), then counts
            if sample(app, "simscore_trace_spans_dropped_total", {"reason": "export_failed"}):
                break
            await asyncio.sleep(0.01)
        failed = sample(app, "simscore_trace_spans_dropped_total", {"reason": "export_failed"})
        assert failed > 0
        text = (await client.get("/metrics")).text
        assert 'simscore_trace_spans_dropped_total{reason="export_failed"}' in text
