"""Hostile uploads that aim at decoding, in-process: abandoned work, the bounded pool, the pixel
and memory budgets, hostile files, tiny files declaring huge canvases."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from PIL import Image, ImageFile
from pydantic import SecretStr

from app.config import Settings
from devtools import attacks
from devtools.attacks import KEY
from devtools.http import pair_files, sample
from devtools.images import encode, photo
from devtools.servers import decoder_of, running
from tests.support.asgi import raw, until

GOOD = encode(photo("astronaut", 64))  # 64 x 64
OTHER = encode(photo("coffee", 64))
KEYED = {"api_keys": [SecretStr(KEY)]}


# -- decoding: abandoned work, the bounded pool, budgets, hostile files ------------------------


class DecodeSpy:
    """Wraps the pipeline's decode steps: counts calls, records the threads they ran on, and
    can hold the first call until ``release`` is set."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, *, hold_first: bool = False) -> None:
        import app.pipeline.decode as decode_stage
        import app.pipeline.maps as maps_stage

        self.calls: list[tuple[str, str]] = []  # (step, thread name)
        self.entered = threading.Event()
        self.release = threading.Event()
        self._hold = hold_first
        self._lock = threading.Lock()
        for module, step in (
            (decode_stage, "prepare_reference"),
            (decode_stage, "prepare_candidate"),
            (decode_stage, "decode_plane"),  # the mask
            (maps_stage, "difference_map_png"),
        ):
            monkeypatch.setattr(module, step, self._wrap(step, getattr(module, step)))

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
        first = asyncio.ensure_future(
            client.post("/compare", files=pair_files(GOOD, OTHER), data={"metrics": "mse"})
        )
        await asyncio.to_thread(spy.entered.wait, 10)
        abandoned = [raw(app, "/compare", parts) for _ in range(4)]
        # Each has its reference decode queued behind the held one.
        await until(lambda: decoder_of(app).waiting == 4)
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


async def test_requests_past_their_deadline_stop_costing_decode_time(
    make_settings: Callable[..., Settings], monkeypatch: pytest.MonkeyPatch
) -> None:
    """One decode thread, held past every deadline by a first request's reference; three more
    requests wait for it and are answered 504. When the thread is freed, nothing else is decoded:
    no request answered 504 leaves a decode behind but the one already running (whose cost
    screening bounds: docs/security.md)."""
    spy = DecodeSpy(monkeypatch, hold_first=True)
    settings = make_settings(decode_threads=1, request_timeout_s=1.0, drain_timeout_s=5)
    async with running(settings) as (app, client):
        first = asyncio.ensure_future(
            client.post("/compare", files=pair_files(GOOD, OTHER), data={"metrics": "mse"})
        )
        await asyncio.to_thread(spy.entered.wait, 10)
        others = [
            await client.post("/compare", files=pair_files(GOOD, OTHER), data={"metrics": "mse"})
            for _ in range(3)
        ]
        answer = await first
        spy.release.set()  # the pool then meets the cancelled decodes, and skips them
        await until(lambda: decoder_of(app).waiting == 0)
        timeouts = sample(app, "simscore_request_failures_total", {"reason": "timeout"})
    assert answer.status_code == 504
    assert [r.status_code for r in others] == [504] * 3
    assert timeouts == 4
    assert [step for step, _ in spy.calls] == ["prepare_reference"]


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
        ["prepare_reference", "prepare_candidate", "decode_plane", "difference_map_png"] * 2
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
    data = hostile.test_file()  # (before the spy: building may read photographs)
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


async def test_decoded_memory_is_bounded_across_requests(
    make_settings: Callable[..., Settings],
) -> None:
    """Tiny uploads that decode large: past SIMSCORE_DECODED_MEMORY_BYTES a candidate is refused
    alone (429), and the bytes are given back when its request ends."""
    from devtools.http import batch_files
    from devtools.images import photo_png

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
