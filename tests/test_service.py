"""The service's one owner of state: loading, ready, draining, stopped, a failed device; request
slots; the memory uploads may hold."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest

from app.budgets import UploadBytes
from app.config import Settings
from app.errors import DeviceFailed, NotReady, Overloaded
from app.observability import Metrics
from app.scoring import Scorer
from app.service import Service
from devtools.http import pair_files, sample
from devtools.images import distort, encode, photo
from devtools.servers import running, service_of
from tests.support.faulty_gpu import faulted_launch


def phase_of(service: Service) -> str:
    return service.phase  # read afresh (mypy would narrow the attribute)


async def test_admission_follows_the_phase(make_settings: Callable[..., Settings]) -> None:
    service = Service(make_settings(max_concurrent_requests=2), Metrics())
    with pytest.raises(NotReady, match="loading"), service.admit():
        pass
    await service.start()
    try:
        assert service.phase == "ready"
        with service.admit() as first, service.admit():
            assert service.in_flight == 2
            assert first.remaining_s > 0
            with (
                pytest.raises(Overloaded, match="SIMSCORE_MAX_CONCURRENT_REQUESTS"),
                service.admit(),
            ):
                pass
        assert service.in_flight == 0
        service.start_draining()
        with pytest.raises(NotReady, match="shutting down"), service.admit():
            pass
    finally:
        await service.stop()
    assert phase_of(service) == "stopped"
    assert service.drained_cleanly


async def test_stop_waits_for_admitted_work(make_settings: Callable[..., Settings]) -> None:
    service = Service(make_settings(), Metrics())
    await service.start()
    finished: list[str] = []

    async def admitted_request() -> None:
        with service.admit():
            await asyncio.sleep(0.3)  # still uploading or decoding when the drain starts
            finished.append("answered")

    request = asyncio.ensure_future(admitted_request())
    await asyncio.sleep(0.05)
    await service.stop()
    await request
    assert finished == ["answered"]
    assert service.drained_cleanly


async def test_a_drain_that_runs_out_says_so(make_settings: Callable[..., Settings]) -> None:
    service = Service(make_settings(request_timeout_s=0.2, drain_timeout_s=0.2), Metrics())
    await service.start()
    release = asyncio.Event()

    async def stuck() -> None:
        with service.admit():
            await release.wait()

    request = asyncio.ensure_future(stuck())
    await asyncio.sleep(0.05)
    await service.stop()
    assert not service.drained_cleanly
    release.set()
    await request


async def test_a_start_up_failure_is_recorded(make_settings: Callable[..., Settings]) -> None:
    service = Service(make_settings(weights="/nonexistent/vgg19.pth"), Metrics())
    with pytest.raises(Exception, match="no such file"):
        await service.start()
    assert service.startup_failed


async def test_a_failed_device_fails_liveness_and_every_request_with_a_clear_503(
    make_settings: Callable[..., Settings], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A sticky CUDA error in a batch: that request gets a 503 saying so, and so does every
    later one; /healthz and /readyz turn 503; the fatal callbacks (the server's exit) run once."""
    image = photo("coffee", 48)
    files = pair_files(encode(image), encode(distort(image, "jpeg")))
    async with running(make_settings(warmup_sides=[])) as (app, client):
        service = service_of(app)
        exits: list[str] = []
        service.when_fatal(lambda: exits.append("exit"))
        assert (await client.post("/compare", files=files)).status_code == 200
        monkeypatch.setattr(Scorer, "launch", faulted_launch)
        for _ in range(2):
            response = await client.post("/compare", files=files)
            assert response.status_code == 503
            assert response.headers["retry-after"] == "1"
            body = response.json()
            assert "the GPU failed (CUDA error: an illegal memory access" in body["detail"]
            assert body["request_id"]
        await asyncio.sleep(0)  # the worker's report reaches the event loop
        assert exits == ["exit"]
        health = await client.get("/healthz")
        assert health.status_code == 503 and "the GPU failed" in health.json()["detail"]
        ready = await client.get("/readyz")
        assert ready.status_code == 503 and ready.json()["status"] == "failed"
        assert sample(app, "simscore_ready") == 0
        assert sample(app, "simscore_request_failures_total", {"reason": "device"}) == 2
        assert sample(app, "simscore_batch_failures_total", {"kind": "device"}) == 1
        with pytest.raises(DeviceFailed, match="the GPU failed"), service.admit():
            pass
    assert service.fatal


def test_upload_memory_is_shared_and_given_back() -> None:
    budget = UploadBytes(100)
    budget.take(60)
    with pytest.raises(Overloaded, match="SIMSCORE_UPLOAD_MEMORY_BYTES=100"):
        budget.take(50)
    budget.give_back(60)
    budget.take(100)
    assert budget.used == 100
