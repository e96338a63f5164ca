"""The service's one owner of state: loading, ready, draining, stopped; request slots; the
memory uploads may hold."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest

from app.budgets import UploadBytes
from app.config import Settings
from app.errors import NotReady, Overloaded
from app.observability import Metrics
from app.service import Service


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


def test_upload_memory_is_shared_and_given_back() -> None:
    budget = UploadBytes(100)
    budget.take(60)
    with pytest.raises(Overloaded, match="SIMSCORE_UPLOAD_MEMORY_BYTES=100"):
        budget.take(50)
    budget.give_back(60)
    budget.take(100)
    assert budget.used == 100
