"""Fixtures of the browser tests: a real uvicorn server, Debian's Chromium driven by Playwright,
pages that fail their test when they reach another origin or log an error, real photographs,
and the folder screenshots are saved in."""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING
from unittest.mock import patch

import pytest

from app.config import Settings
from app.server import SimscoreServer
from tests.support.images import distort, encode, photo, photo_png, solid_png
from tests.support.servers import serve_in_thread
from tests.support.settings import settings_for
from tests.web.support import CHROMIUM, CHROMIUM_ARGS, WAIT_MS

if TYPE_CHECKING:
    from playwright.sync_api import Browser, BrowserContext, ConsoleMessage, Page, Request

OpenPage = Callable[[str], "Page"]


@dataclass(frozen=True)
class Photos:
    """A reference and its candidates: real photographs, 96 x 64 px (fast on a CPU)."""

    reference: Path  # golden.png
    jpeg: Path  # render-1-jpeg.jpg: JPEG quality 20
    broken: Path  # render-2-broken.png: a PNG signature and nothing else of a PNG
    colour: Path  # render-3-colour.png: a strong colour cast, easy to see in the diff views
    identical: Path  # the reference's bytes under another name
    mask: Path  # white: compare everywhere

    @property
    def review(self) -> list[Path]:
        """Three candidates, one of them broken, in file-name order."""
        return [self.jpeg, self.broken, self.colour]


@pytest.fixture(scope="session")
def photos(tmp_path_factory: pytest.TempPathFactory) -> Photos:
    folder = tmp_path_factory.mktemp("photos")
    image = photo("chelsea", 96, keep_aspect=True)
    files = {
        "golden.png": photo_png("chelsea"),
        "render-1-jpeg.jpg": encode(image, "JPEG", quality=20),
        "render-2-broken.png": b"\x89PNG\r\n\x1a\n not really",
        "render-3-colour.png": encode(distort(image, "colour", strength=3)),
        "identical.png": photo_png("chelsea"),
        "mask.png": solid_png(96, 64, (255, 255, 255)),
    }
    for name, payload in files.items():
        (folder / name).write_bytes(payload)
    return Photos(
        reference=folder / "golden.png",
        jpeg=folder / "render-1-jpeg.jpg",
        broken=folder / "render-2-broken.png",
        colour=folder / "render-3-colour.png",
        identical=folder / "identical.png",
        mask=folder / "mask.png",
    )


@pytest.fixture(scope="session")
def artifacts(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where screenshots go: $SIMSCORE_ARTIFACTS, or a pytest temporary folder."""
    configured = os.environ.get("SIMSCORE_ARTIFACTS")
    folder = Path(configured) if configured else tmp_path_factory.mktemp("artifacts")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


_capture_signals = SimscoreServer.capture_signals


@contextlib.contextmanager
def _signals_on_the_main_thread_only(server: SimscoreServer) -> Generator[None, None, None]:
    # Python installs signal handlers on the main thread only; uvicorn's own server skips them
    # elsewhere, SimscoreServer.capture_signals does not (yet), so serve_in_thread fails there.
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    with _capture_signals(server):
        yield


@contextlib.contextmanager
def serving(settings: Settings) -> Iterator[str]:
    """``serve_in_thread(settings)``: a real uvicorn server in a thread; yields its base URL."""
    with (
        patch.object(SimscoreServer, "capture_signals", _signals_on_the_main_thread_only),
        serve_in_thread(settings) as url,
    ):
        yield url


@pytest.fixture(scope="session")
def server_url(weights_file: Path) -> Iterator[str]:
    """A real uvicorn server with the seeded weights file and no keys."""
    with serving(settings_for(weights_file)) as url:
        yield url


@pytest.fixture(scope="session")
def browser() -> Iterator[Browser]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture
def open_page(browser: Browser) -> Iterator[OpenPage]:
    """Opens the page at ``base_url + "/"`` in a fresh browser context. At the end of the test,
    fails it if any page asked anything of another origin or logged a JavaScript or
    Content-Security-Policy error."""
    contexts: list[BrowserContext] = []
    foreign: list[str] = []
    errors: list[str] = []

    def open_at(base_url: str) -> Page:
        context = browser.new_context(viewport={"width": 1200, "height": 1000})
        contexts.append(context)
        page = context.new_page()
        page.set_default_timeout(WAIT_MS)

        def on_request(request: Request) -> None:
            if not request.url.startswith((base_url, "data:", "blob:")):
                foreign.append(request.url)

        def on_console(message: ConsoleMessage) -> None:
            # A 4xx answer is expected in some tests and logs "Failed to load resource".
            if message.type == "error" and "Failed to load resource" not in message.text:
                errors.append(message.text)

        page.on("request", on_request)
        page.on("pageerror", lambda error: errors.append(str(error)))
        page.on("console", on_console)
        page.goto(base_url + "/")
        page.wait_for_load_state("load")
        return page

    yield open_at
    for context in contexts:
        context.close()
    assert foreign == [], f"the page reached outside its origin: {foreign}"
    assert errors == [], f"JavaScript or CSP errors: {errors}"


@pytest.fixture
def page(open_page: OpenPage, server_url: str) -> Page:
    """The page on the default server."""
    return open_page(server_url)
