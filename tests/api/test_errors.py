"""Bad input gets a clear 4xx JSON ``detail``, and the server keeps serving everyone else."""

from __future__ import annotations

import io
import threading
from collections.abc import AsyncIterator, Callable, Sequence

import httpx
import numpy as np
import pytest
from PIL import Image

from app.config import Settings
from app.scoring import PairRequest, PairScores
from devtools import attacks
from devtools.http import metric_value
from devtools.http import pair_files as files
from devtools.images import encode, photo
from devtools.servers import queue_of, running, service_of
from tests.support.asgi import raw
from tests.support.models import ScoreFn, intercept_scoring

GOOD = encode(photo("astronaut", 64))
OTHER = encode(photo("coffee", 64))


def huge_png(side: int) -> bytes:
    buffer = io.BytesIO()
    Image.new("1", (side, side)).save(buffer, format="PNG", optimize=True)
    return buffer.getvalue()


CASES = {
    "empty": (b"", 400, "empty"),
    "truncated": (GOOD[: len(GOOD) // 2], 400, "truncated"),
    "not an image": (b"hello, world" * 10, 400, "not a PNG"),
    "svg": (b'<svg xmlns="http://www.w3.org/2000/svg" width="64" height="64"/>', 415, "SVG"),
    "too small": (encode(np.zeros((8, 64, 3), np.uint8)), 422, "at least 16 px"),
    "too many pixels": (huge_png(7000), 413, "SIMSCORE_MAX_PIXELS"),
}


@pytest.mark.parametrize("case", CASES)
async def test_unusable_candidate_is_a_clear_4xx(
    make_settings: Callable[..., Settings], case: str
) -> None:
    payload, status, words = CASES[case]
    async with running(make_settings(max_pixels=40_000_000)) as (_, client):
        response = await client.post("/compare", files=files(GOOD, payload))
        assert response.status_code == status, response.text
        assert words.lower() in response.json()["detail"].lower()
        assert response.headers["content-type"] == "application/json"
        again = await client.post("/compare", files=files(GOOD, OTHER))
        assert again.status_code == 200
        metrics = (await client.get("/metrics")).text
    assert 'simscore_request_failures_total{reason="invalid_input"} 1.0' in metrics


@pytest.mark.parametrize(
    ("form", "data", "words"),
    [
        ({"reference": GOOD}, {}, "candidate: field required"),
        ({"reference": GOOD, "image": OTHER}, {}, "candidate"),
        ({"reference": GOOD, "candidate": OTHER}, {"metrics": "vgg,niqe"}, "unknown score"),
        ({"reference": GOOD, "candidate": OTHER}, {"size_policy": "stretch"}, "size_policy"),
    ],
)
async def test_bad_form_is_422_with_a_detail(
    make_settings: Callable[..., Settings],
    form: dict[str, bytes],
    data: dict[str, str],
    words: str,
) -> None:
    async with running(make_settings()) as (_, client):
        response = await client.post(
            "/compare", files={k: (k, v, "image/png") for k, v in form.items()}, data=data
        )
    assert response.status_code == 422
    assert words in response.json()["detail"]


async def test_upload_over_the_limit_is_413(make_settings: Callable[..., Settings]) -> None:
    async with running(make_settings(max_upload_bytes=50_000)) as (_, client):
        big = encode(np.random.default_rng(0).integers(0, 255, (200, 200, 3), np.uint8))
        response = await client.post("/compare", files=files(GOOD, big))
    assert response.status_code == 413
    assert "SIMSCORE_MAX_UPLOAD_BYTES" in response.json()["detail"]


async def test_streamed_upload_is_refused_without_reading_it_whole(
    make_settings: Callable[..., Settings],
) -> None:
    """A 60 MB chunked upload (no Content-Length) stops being read at the cap."""
    sent = 0
    chunk = b"\0" * (1 << 20)

    async def body() -> AsyncIterator[bytes]:
        nonlocal sent
        yield (
            b'--b\r\nContent-Disposition: form-data; name="reference"; filename="r.png"\r\n'
            b"Content-Type: image/png\r\n\r\n"
        )
        for _ in range(60):
            sent += len(chunk)
            yield chunk
        yield b"\r\n--b--\r\n"

    async with running(make_settings(max_upload_bytes=5_000_000)) as (_, client):
        response = await client.post(
            "/compare",
            content=body(),
            headers={"content-type": "multipart/form-data; boundary=b"},
        )
    assert response.status_code == 413
    assert sent < 20 * len(chunk)


async def test_declared_oversized_body_is_refused_before_reading(
    make_settings: Callable[..., Settings],
) -> None:
    async with running(make_settings(max_request_bytes=1_000_000)) as (_, client):
        response = await client.post(
            "/compare",
            content=b"x" * 10,
            headers={
                "content-type": "multipart/form-data; boundary=b",
                "content-length": "5000000",
            },
        )
    assert response.status_code == 413
    assert "request body over" in response.json()["detail"]


class Gate:
    """Stands in front of the scorer so a test can hold the worker, or fail it once."""

    def __init__(self, score: ScoreFn) -> None:
        self.score = score
        self.open = threading.Event()
        self.entered = threading.Event()
        self.fail_next = False

    @classmethod
    def install(cls, app: object) -> Gate:
        """A gate in front of the app's scorer."""
        gates: list[Gate] = []

        def wrap(score: ScoreFn) -> ScoreFn:
            gates.append(cls(score))
            return gates[0]

        intercept_scoring(queue_of(app).scorer, wrap)
        return gates[0]

    def __call__(self, pairs: Sequence[PairRequest]) -> list[PairScores]:
        self.entered.set()
        self.open.wait(30)
        if self.fail_next:
            self.fail_next = False
            raise RuntimeError("simulated bug")
        return self.score(pairs)


async def test_full_queue_is_429_with_retry_after(make_settings: Callable[..., Settings]) -> None:
    settings = make_settings(queue_size=1, max_batch_size=1, max_wait_ms=0)
    async with running(settings) as (app, client):
        gate = Gate.install(app)
        import asyncio

        held = asyncio.ensure_future(client.post("/compare", files=files(GOOD, OTHER)))
        await asyncio.to_thread(gate.entered.wait, 10)
        queued = asyncio.ensure_future(client.post("/compare", files=files(GOOD, OTHER)))
        while queue_of(app).batcher.depth < 2:
            await asyncio.sleep(0.01)
        rejected = await client.post("/compare", files=files(GOOD, OTHER))
        gate.open.set()
        assert (await held).status_code == 200
        assert (await queued).status_code == 200
        metrics = (await client.get("/metrics")).text
    assert rejected.status_code == 429
    assert rejected.headers["retry-after"] == "1"
    assert "queue is full" in rejected.json()["detail"]
    assert 'simscore_request_failures_total{reason="rejected"} 1.0' in metrics


async def test_past_the_deadline_is_504(make_settings: Callable[..., Settings]) -> None:
    async with running(make_settings(request_timeout_s=0.3)) as (app, client):
        gate = Gate.install(app)
        response = await client.post("/compare", files=files(GOOD, OTHER))
        gate.open.set()
        metrics = (await client.get("/metrics")).text
    assert response.status_code == 504
    assert "SIMSCORE_REQUEST_TIMEOUT_S" in response.json()["detail"]
    assert 'simscore_request_failures_total{reason="timeout"} 1.0' in metrics


async def test_a_bug_is_a_json_500_and_the_server_keeps_serving(
    make_settings: Callable[..., Settings],
) -> None:
    async with running(make_settings()) as (app, client):
        pipeline = service_of(app).pipeline
        assert pipeline is not None
        gate = Gate.install(app)
        gate.open.set()
        gate.fail_next = True
        failed = await client.post("/compare", files=files(GOOD, OTHER))
        ok = await client.post("/compare", files=files(GOOD, OTHER))
        health = await client.get("/healthz")
    assert failed.status_code == 500
    assert failed.json()["detail"].startswith("internal error")
    assert failed.json()["request_id"] == failed.headers["x-request-id"]
    assert ok.status_code == 200
    assert health.status_code == 200


async def test_draining_refuses_new_work_with_503(make_settings: Callable[..., Settings]) -> None:
    async with running(make_settings()) as (app, client):
        assert (await client.get("/readyz")).status_code == 200
        service_of(app).start_draining()
        ready = await client.get("/readyz")
        compare = await client.post("/compare", files=files(GOOD, OTHER))
        health = await client.get("/healthz")
        metrics = (await client.get("/metrics")).text
    assert ready.status_code == 503
    assert compare.status_code == 503
    assert compare.headers["retry-after"] == "1"
    assert "shutting down" in compare.json()["detail"]
    assert health.status_code == 200
    assert metric_value(metrics, "simscore_ready") == 0


async def test_healthz_fails_when_the_worker_is_dead(
    make_settings: Callable[..., Settings],
) -> None:
    async with running(make_settings()) as (app, client):
        pipeline = service_of(app).pipeline
        assert pipeline is not None
        queue_of(app).batcher.close()  # the worker thread ends
        response = await client.get("/healthz")
    assert response.status_code == 503
    assert response.json()["status"] == "unhealthy"
    assert "worker died" in response.json()["detail"]


async def test_not_ready_before_the_lifespan_has_run(
    make_settings: Callable[..., Settings],
) -> None:
    from app.main import create_app

    app = create_app(make_settings())
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as c:
        ready = await c.get("/readyz")
        compare = await c.post("/compare", files=files(GOOD, OTHER))
    assert ready.status_code == 503
    assert compare.status_code == 503
    assert "loading" in compare.json()["detail"]


async def test_request_id_is_echoed_or_generated(make_settings: Callable[..., Settings]) -> None:
    async with running(make_settings()) as (_, client):
        echoed = await client.get("/healthz", headers={"x-request-id": "dash-42"})
        generated = await client.get("/healthz")
        unsafe = await client.get("/healthz", headers={"x-request-id": "bad id\nwith newline"})
    assert echoed.headers["x-request-id"] == "dash-42"
    assert len(generated.headers["x-request-id"]) == 32
    assert unsafe.headers["x-request-id"] != "bad id\nwith newline"


async def test_metrics_exports_every_documented_name(
    make_settings: Callable[..., Settings],
) -> None:
    from app.observability import EXPORTED_METRICS

    async with running(make_settings()) as (_, client):
        await client.post("/compare", files=files(GOOD, OTHER))
        text = (await client.get("/metrics")).text
    for name in EXPORTED_METRICS:
        assert f"# TYPE {name} " in text or f"# TYPE {name}_total counter" in text, name
    assert 'simscore_requests_total{status="200"}' in text
    assert 'simscore_batch_size_bucket{le="64.0"}' in text


async def test_a_client_that_goes_away_is_dropped_before_compute(
    make_settings: Callable[..., Settings],
) -> None:
    import asyncio

    settings = make_settings(max_batch_size=1, max_wait_ms=0)
    async with running(settings) as (app, client):
        pipeline = service_of(app).pipeline
        assert pipeline is not None
        gate = Gate.install(app)
        scored: list[int] = []

        def counting(score: ScoreFn) -> ScoreFn:
            def count(pairs: Sequence[PairRequest]) -> list[PairScores]:
                scored.append(len(pairs))
                return score(pairs)

            return count

        intercept_scoring(queue_of(app).scorer, counting)
        held = asyncio.ensure_future(client.post("/compare", files=files(GOOD, OTHER)))
        await asyncio.to_thread(gate.entered.wait, 10)

        # A raw ASGI request whose client disconnects while its pair is queued.
        request = raw(app, "/compare", attacks.pair_parts(GOOD, OTHER))
        while queue_of(app).batcher.depth < 2:
            await asyncio.sleep(0.01)
        request.gone.set()
        await asyncio.wait_for(request.task, 10)
        gate.open.set()
        assert (await held).status_code == 200
        await asyncio.sleep(0.1)
        metrics = (await client.get("/metrics")).text
    assert scored == [1]  # only the held request reached the model
    assert 'simscore_request_failures_total{reason="cancelled"} 1.0' in metrics


async def test_out_of_memory_splits_then_fails_only_the_pair_that_does_not_fit(
    make_settings: Callable[..., Settings],
) -> None:
    import asyncio

    import torch

    async with running(make_settings(max_batch_size=4, max_wait_ms=100)) as (app, client):
        pipeline = service_of(app).pipeline
        assert pipeline is not None
        big = encode(photo("chelsea", 96))

        def scarce(real: ScoreFn) -> ScoreFn:
            def score(pairs: Sequence[PairRequest]) -> list[PairScores]:
                if len(pairs) > 1 or pairs[0].shape[-1] == 96:
                    raise torch.OutOfMemoryError("CUDA out of memory (simulated)")
                return real(pairs)

            return score

        intercept_scoring(queue_of(app).scorer, scarce)
        max_batch_pixels = queue_of(app).max_batch_pixels
        responses = await asyncio.gather(
            client.post("/compare", files=files(GOOD, OTHER)),
            client.post("/compare", files=files(OTHER, GOOD)),
            client.post("/compare", files=files(big, big)),
        )
        metrics = (await client.get("/metrics")).text
    assert [r.status_code for r in responses] == [200, 200, 413]
    detail = responses[2].json()["detail"]
    assert "out of memory" in detail
    assert f"SIMSCORE_MAX_BATCH_PIXELS={max_batch_pixels}" in detail
    assert 'simscore_request_failures_total{reason="oom"} 1.0' in metrics


async def test_too_many_requests_in_flight_is_429(make_settings: Callable[..., Settings]) -> None:
    import asyncio

    settings = make_settings(max_concurrent_requests=1, max_batch_size=1, max_wait_ms=0)
    async with running(settings) as (app, client):
        gate = Gate.install(app)
        held = asyncio.ensure_future(client.post("/compare", files=files(GOOD, OTHER)))
        await asyncio.to_thread(gate.entered.wait, 10)
        rejected = await client.post("/compare", files=files(GOOD, OTHER))
        gate.open.set()
        assert (await held).status_code == 200
        after = await client.post("/compare", files=files(GOOD, OTHER))
    assert rejected.status_code == 429
    assert "SIMSCORE_MAX_CONCURRENT_REQUESTS" in rejected.json()["detail"]
    assert after.status_code == 200
