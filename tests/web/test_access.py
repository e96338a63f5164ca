"""What the page says about access and provenance: API keys (session storage, Bearer header, a
401 in words), the random-weights warning, and the optional mask field."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

import pytest
from pydantic import SecretStr

from devtools.servers import serve_in_thread
from devtools.settings import settings_for
from tests.web.support import BROWSER_TEST, OpenPage, Photos, choose, submit

if TYPE_CHECKING:
    from playwright.sync_api import Page, Route

pytestmark = BROWSER_TEST

KEY = "web-test-key-" + "k" * 16


@pytest.fixture(scope="module")
def keyed_url(weights_file: Path) -> Iterator[str]:
    with serve_in_thread(settings_for(weights_file, api_keys=[SecretStr(KEY)])) as url:
        yield url


@pytest.fixture(scope="module")
def random_url(weights_file: Path) -> Iterator[str]:
    with serve_in_thread(settings_for(weights_file, weights="random")) as url:
        yield url


def authorizations(page: Page) -> list[str | None]:
    """The Authorization header of every scoring request the page sends from now on."""
    sent: list[str | None] = []
    page.on(
        "request",
        lambda request: (
            sent.append(request.headers.get("authorization")) if request.method == "POST" else None
        ),
    )
    return sent


def test_api_key_flow(open_page: OpenPage, keyed_url: str, photos: Photos) -> None:
    page = open_page(keyed_url)
    sent = authorizations(page)
    choose(page, photos.reference, [photos.jpeg])
    assert submit(page) == "error"
    assert page.text_content("#status") == "The server needs an API key: enter it under Options."
    assert page.locator("#api-key").is_visible(), "Options open on a 401"
    assert page.evaluate("document.activeElement.id") == "api-key"

    page.fill("#api-key", "not-the-key-but-long-enough")
    assert submit(page) == "error"
    assert "refused this API key" in (page.text_content("#status") or "")

    page.fill("#api-key", KEY)
    # the picker grows once the server lists its scores for this key: let it settle first, so
    # the Compare button is where the click lands
    page.dispatch_event("#api-key", "change")
    page.wait_for_selector("input[name=scores][value=flip]", state="attached")
    assert submit(page) == "done", page.text_content("#status")
    assert sent == [None, "Bearer not-the-key-but-long-enough", f"Bearer {KEY}"]
    assert page.evaluate("sessionStorage.getItem('simscore.apiKey')") == KEY
    assert page.evaluate("localStorage.length") == 0, "the key is never kept once the tab closes"

    # The key survives a reload of the tab, and goes with batches and heat maps too.
    page.reload()
    assert page.input_value("#api-key") == KEY
    sent.clear()
    choose(page, photos.reference, photos.review)
    assert submit(page) == "done", page.text_content("#status")
    page.click("button[data-view=heatmap]")
    page.wait_for_selector("[data-view-panel=heatmap][data-map-state=done]")
    assert sent == [f"Bearer {KEY}", f"Bearer {KEY}"]  # /compare/batch, /compare/map


def test_random_weights_are_announced(open_page: OpenPage, random_url: str, photos: Photos) -> None:
    page = open_page(random_url)
    warning = page.locator("[data-warning=random-weights]")
    assert warning.is_hidden(), "nothing is known about the model before a comparison"
    choose(page, photos.reference, photos.review)
    assert submit(page) == "done", page.text_content("#status")
    assert warning.is_visible()
    assert "vgg and style scores mean nothing" in (warning.text_content() or "")
    assert page.text_content("[data-provenance=weights]") == "random"


def test_a_chosen_mask_is_sent_as_the_mask_field(page: Page, photos: Photos) -> None:
    """The page sends ``mask`` when one is chosen (the multipart structure as Chromium reports
    it: field names and file names, not the file contents), and shows its coverage."""
    bodies: dict[str, list[bytes]] = {}

    def record(route: Route) -> None:
        path = urlsplit(route.request.url).path
        bodies.setdefault(path, []).append(route.request.post_data_buffer or b"")
        route.continue_()

    page.route("**/compare**", record)
    choose(page, photos.reference, [photos.jpeg])
    assert submit(page) == "done"
    assert page.is_hidden("[data-provenance=mask]")
    page.set_input_files("input[name=mask]", str(photos.mask))
    assert submit(page) == "done"
    assert page.is_visible("[data-provenance=mask]")
    assert page.text_content("[data-provenance=coverage]") == "100.0 %"  # an all-white mask
    choose(page, photos.reference, photos.review)
    assert submit(page) == "done"
    page.click("button[data-view=heatmap]")
    page.wait_for_selector("[data-view-panel=heatmap][data-map-state=done]")

    mask_part = b'name="mask"; filename="mask.png"'
    assert [mask_part in body for body in bodies["/compare"]] == [False, True]
    assert [mask_part in body for body in bodies["/compare/batch"]] == [True]
    assert [mask_part in body for body in bodies["/compare/map"]] == [True]
