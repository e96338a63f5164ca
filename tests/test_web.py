"""The web page at / in a real browser: Debian's Chromium driven by Playwright, against a real
uvicorn server on loopback. Skips, saying why, where Chromium or Playwright is missing."""

from __future__ import annotations

import base64
import math
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from PIL import Image

from app.main import create_app
from tests.dashboard_support import dashboard_settings, decode_png, photo_array, photo_png

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
METRICS = ("vgg", "style", "ssim", "mse", "psnr")
WAIT_MS = 30_000

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        not CHROMIUM.exists(),
        reason=f"{CHROMIUM} is missing: install Debian's chromium (`apt-get install chromium`, as "
        ".ci/run does) to run the browser test; never `playwright install`",
    ),
]
sync_api = pytest.importorskip(
    "playwright.sync_api", reason="playwright is not installed (pip install -e '.[dev]')"
)


@pytest.fixture(scope="module")
def server_url(weights_file: Path) -> Iterator[str]:
    """A real uvicorn server on a free loopback port, in a thread of this process."""
    config = uvicorn.Config(
        create_app(dashboard_settings(weights_file)),
        host="127.0.0.1",
        port=0,
        log_level="warning",
        lifespan="on",
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name="uvicorn-test", daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.05)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(30)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with sync_api.sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture
def page(browser: Any, server_url: str) -> Iterator[Any]:
    """A fresh page on the app that fails the test if it asks anything of another origin."""
    context = browser.new_context(viewport={"width": 1280, "height": 1000})
    page = context.new_page()
    page.set_default_timeout(WAIT_MS)
    foreign: list[str] = []
    errors: list[str] = []
    page.on(
        "request",
        lambda request: (
            None
            if request.url.startswith((server_url, "data:", "blob:"))
            else foreign.append(request.url)
        ),
    )
    page.on("pageerror", lambda error: errors.append(str(error)))
    # Console errors include Content-Security-Policy violations; a 4xx answer is expected in
    # one test and logs "Failed to load resource".
    page.on(
        "console",
        lambda message: (
            errors.append(message.text)
            if message.type == "error" and "Failed to load resource" not in message.text
            else None
        ),
    )
    page.goto(server_url + "/")
    yield page
    context.close()
    assert foreign == [], f"the page reached outside its origin: {foreign}"
    assert errors == [], f"JavaScript or CSP errors: {errors}"


@pytest.fixture(scope="module")
def photographs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A PNG reference and a JPEG candidate: two real photographs of the same size (96 x 64)."""
    folder = tmp_path_factory.mktemp("photos")
    reference = folder / "chelsea.png"
    reference.write_bytes(photo_png("chelsea"))
    candidate = folder / "coffee.jpg"
    Image.fromarray(photo_array("coffee")).save(candidate, "JPEG", quality=90)
    return reference, candidate


def api_scores(server_url: str, reference: Path, candidate: Path) -> dict[str, Any]:
    files = {
        "reference": (reference.name, reference.read_bytes()),
        "candidate": (candidate.name, candidate.read_bytes()),
    }
    response = httpx.post(server_url + "/compare", files=files, timeout=60)
    response.raise_for_status()
    body: dict[str, Any] = response.json()
    return body


def page_scores(page: Any) -> dict[str, str]:
    return {name: page.text_content(f'[data-metric="{name}"]') or "" for name in METRICS}


def wait_for_result(page: Any) -> str:
    page.wait_for_selector("#results[data-state=done], #results[data-state=error]")
    state: str = page.get_attribute("#results", "data-state")
    return state


def test_page_scores_equal_the_api(
    page: Any, server_url: str, photographs: tuple[Path, Path], tmp_path: Path
) -> None:
    reference, candidate = photographs
    page.set_input_files("input[name=reference]", str(reference))
    page.set_input_files("input[name=candidate]", str(candidate))
    for name in ("reference", "candidate"):
        preview = page.locator(f"#{name}-preview")
        preview.wait_for(state="visible")
        assert page.evaluate(f"document.getElementById('{name}-preview').naturalWidth") == 96
    page.click("button[type=submit]")
    assert wait_for_result(page) == "done", page.text_content("#status")

    shown = page_scores(page)
    expected = api_scores(server_url, reference, candidate)["scores"]
    for name in METRICS:
        assert expected[name] is not None
        assert math.isclose(float(shown[name]), expected[name], rel_tol=1e-6), name
    assert 0 < float(shown["ssim"]) < 1

    # Five per-layer bars for each feature metric, and the SSIM map at the compared size.
    assert page.locator("#layers-vgg tbody tr").count() == 5
    assert page.locator("#layers-style tbody tr").count() == 5
    size = page.evaluate(
        "[document.getElementById('ssim-map').naturalWidth,"
        " document.getElementById('ssim-map').naturalHeight]"
    )
    assert size == [96, 64]
    source = page.get_attribute("#ssim-map", "src")
    assert source.startswith("data:image/png;base64,")
    assert decode_png(base64.b64decode(source.split(",", 1)[1])).shape == (64, 96, 3)

    shot = tmp_path / "simscore-page.png"
    page.screenshot(path=str(shot), full_page=True)
    with Image.open(shot) as image:
        assert image.format == "PNG"
        assert image.width >= 800


def test_drop_and_keyboard(page: Any, server_url: str, photographs: tuple[Path, Path]) -> None:
    """Files dropped on the pickers are used; the form submits from the keyboard."""
    reference, _ = photographs
    for name in ("reference", "candidate"):
        page.evaluate(
            """([selector, b64, filename]) => {
                const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
                const transfer = new DataTransfer();
                transfer.items.add(new File([bytes], filename, { type: "image/png" }));
                const zone = document.querySelector(selector);
                const init = { dataTransfer: transfer, bubbles: true, cancelable: true };
                zone.dispatchEvent(new DragEvent("dragover", init));
                zone.dispatchEvent(new DragEvent("drop", init));
            }""",
            [
                f'[data-drop-for="{name}"]',
                base64.b64encode(reference.read_bytes()).decode(),
                f"{name}.png",
            ],
        )
        assert page.evaluate(f"document.querySelector('input[name={name}]').files.length") == 1
        page.locator(f"#{name}-preview").wait_for(state="visible")
    page.focus("button[type=submit]")
    page.keyboard.press("Enter")
    assert wait_for_result(page) == "done", page.text_content("#status")
    shown = page_scores(page)
    assert float(shown["mse"]) == 0
    assert float(shown["ssim"]) == pytest.approx(1.0, abs=1e-6)
    assert shown["psnr"] == "Infinity"


def test_server_errors_are_shown(page: Any, tmp_path: Path) -> None:
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"\x89PNG\r\n\x1a\n not really")
    good = tmp_path / "good.png"
    good.write_bytes(photo_png("astronaut"))
    page.set_input_files("input[name=reference]", str(good))
    page.set_input_files("input[name=candidate]", str(broken))
    page.click("button[type=submit]")
    assert wait_for_result(page) == "error"
    status = page.text_content("#status") or ""
    assert status.startswith("Error 400")
    assert "candidate image" in status


def test_inputs_are_labelled(page: Any) -> None:
    """Accessible names: each control can be found by its label, as a screen reader would."""
    assert page.get_by_label("Reference image").get_attribute("name") == "reference"
    assert page.get_by_label("Candidate image").get_attribute("name") == "candidate"
    assert page.get_by_role("button", name="Compare", exact=True).get_attribute("type") == "submit"
    assert page.get_attribute("#status", "aria-live") == "polite"  # errors are announced
