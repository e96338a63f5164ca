"""Fixtures of the browser tests: a real uvicorn server, Debian's Chromium driven by Playwright,
pages that fail their test when they reach another origin or log an error, real photographs,
and the folder screenshots are saved in."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from devtools.images import distort, encode, photo, photo_png, solid_png
from devtools.servers import serve_in_thread
from devtools.settings import settings_for
from tests.web.support import CHROMIUM, CHROMIUM_ARGS, WAIT_MS, OpenPage, Photos

if TYPE_CHECKING:
    from playwright.sync_api import Browser, BrowserContext, ConsoleMessage, Page, Request


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


@pytest.fixture(scope="session")
def server_url(weights_file: Path) -> Iterator[str]:
    """A real uvicorn server with the seeded weights file and no keys."""
    with serve_in_thread(settings_for(weights_file)) as url:
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
