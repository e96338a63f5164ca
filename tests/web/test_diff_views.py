"""The diff views of the open pair, checked on the pixels the browser draws: side by side,
swipe, onion skin and the heat map over the image, all at the compared size, from the keyboard
too."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import httpx
import numpy as np

from devtools.images import decode_png, encode, photo
from tests.web.support import BROWSER_TEST, Photos, choose, submit

if TYPE_CHECKING:
    from playwright.sync_api import Page

pytestmark = BROWSER_TEST

ZOOM = 4  # "auto" zoom of a 96 px wide pair: the largest of 4x, 2x that stays within 480 px
TOLERANCE = 3.0  # mean absolute difference, 0-255, between what is drawn and what is expected


def open_pair(page: Page, photos: Photos, candidate: Path) -> None:
    choose(page, photos.reference, [candidate])
    assert submit(page) == "done", page.text_content("#status")


def show(page: Page, view: str) -> None:
    page.click(f"button[data-view={view}]")
    assert page.get_attribute(f"button[data-view={view}]", "aria-pressed") == "true"
    page.wait_for_function(
        "() => [...document.querySelectorAll('#viewer img[src]')].every(i => i.complete)"
    )


def drawn(page: Page, view: str) -> np.ndarray:
    """The view's (first) stage as the browser draws it, RGB float. The stage may sit at a
    fractional y; Chromium paints it snapped to whole pixels, so the clip is rounded too."""
    stage = page.locator(f"[data-view-panel={view}] .stage").first
    stage.scroll_into_view_if_needed()
    box = stage.bounding_box()
    assert box is not None
    clip = {key: round(box[key]) for key in ("x", "y", "width", "height")}
    return decode_png(page.screenshot(clip=clip)).astype(np.float64)  # type: ignore[arg-type]


def zoomed(png: bytes) -> np.ndarray:
    """What a pixelated ``ZOOM`` x drawing of ``png`` looks like."""
    image = decode_png(png).astype(np.float64)
    return np.repeat(np.repeat(image, ZOOM, axis=0), ZOOM, axis=1)


def differ(a: np.ndarray, b: np.ndarray) -> float:
    assert a.shape == b.shape, (a.shape, b.shape)
    return float(np.abs(a - b).mean())


def set_slider(page: Page, name: str, value: int) -> None:
    page.eval_on_selector(
        f"input[name={name}]",
        "(s, v) => { s.value = String(v); s.dispatchEvent(new Event('input', {bubbles: true})); }",
        value,
    )


def test_side_by_side_draws_both_at_the_compared_size(
    page: Page, photos: Photos, tmp_path: Path
) -> None:
    larger = tmp_path / "larger.png"  # 128 x 85: resized to the reference's 96 x 64
    larger.write_bytes(encode(photo("chelsea", 128, keep_aspect=True)))
    open_pair(page, photos, larger)
    assert "candidate resized from 128\u00d785 px" in (page.text_content("#image-info") or "")
    stages = page.locator("[data-view-panel=side-by-side] .stage")
    assert stages.count() == 2
    for i in range(2):
        box = stages.nth(i).bounding_box()
        assert box is not None
        assert (box["width"], box["height"]) == (96 * ZOOM, 64 * ZOOM)
    pixels = drawn(page, "side-by-side")  # the first stage: the reference
    assert differ(pixels, zoomed(photos.reference.read_bytes())) < TOLERANCE

    page.select_option("select[name=zoom]", "1")
    box = stages.first.bounding_box()
    assert box is not None and (box["width"], box["height"]) == (96, 64)
    page.select_option("select[name=zoom]", "fit")
    box = stages.first.bounding_box()
    assert box is not None and box["width"] > 96 * ZOOM
    assert abs(box["width"] / box["height"] - 96 / 64) < 0.01, "the aspect is kept"


def test_swipe_reveals_the_candidate_over_the_reference(
    page: Page, photos: Photos, artifacts: Path
) -> None:
    open_pair(page, photos, photos.colour)
    show(page, "swipe")
    reference = zoomed(photos.reference.read_bytes())
    candidate = zoomed(photos.colour.read_bytes())
    assert differ(reference, candidate) > 10 * TOLERANCE  # a pair the eye can tell apart
    slider = page.locator("input[type=range][name=swipe]")
    assert slider.is_visible()

    slider.focus()
    page.keyboard.press("Home")
    assert differ(drawn(page, "swipe")[:, 4:], reference[:, 4:]) < TOLERANCE
    page.keyboard.press("End")
    assert differ(drawn(page, "swipe")[:, :-4], candidate[:, :-4]) < TOLERANCE

    set_slider(page, "swipe", 50)
    assert page.text_content("output[for=swipe]") == "50 %"
    pixels = drawn(page, "swipe")
    middle = 48 * ZOOM
    assert differ(pixels[:, : middle - 6], candidate[:, : middle - 6]) < TOLERANCE
    assert differ(pixels[:, middle + 6 :], reference[:, middle + 6 :]) < TOLERANCE
    page.locator("#viewer").screenshot(path=str(artifacts / "review-swipe.png"))

    # Dragging across the image moves the line too.
    box = page.locator("[data-view-panel=swipe] .stage").bounding_box()
    assert box is not None
    y = box["y"] + box["height"] / 2
    page.mouse.move(box["x"] + 0.6 * box["width"], y)
    page.mouse.down()
    page.mouse.move(box["x"] + 0.25 * box["width"], y, steps=5)
    page.mouse.up()
    assert 23 <= int(slider.input_value()) <= 27


def test_onion_skin_blends_by_the_opacity_slider(page: Page, photos: Photos) -> None:
    open_pair(page, photos, photos.colour)
    show(page, "onion")
    reference = zoomed(photos.reference.read_bytes())
    candidate = zoomed(photos.colour.read_bytes())
    slider = page.locator("input[type=range][name=opacity]")
    slider.focus()
    page.keyboard.press("Home")
    assert differ(drawn(page, "onion"), reference) < TOLERANCE
    page.keyboard.press("End")
    assert differ(drawn(page, "onion"), candidate) < TOLERANCE
    set_slider(page, "opacity", 50)
    assert differ(drawn(page, "onion"), (reference + candidate) / 2) < TOLERANCE
    assert page.text_content("output[for=opacity]") == "50 %"


def api_map(server_url: str, reference: Path, candidate: Path, kind: str) -> bytes:
    """The map the API draws for the pair (a pure function of the two images)."""
    files = {"reference": reference.read_bytes(), "candidate": candidate.read_bytes()}
    response = httpx.post(f"{server_url}/compare/map", files=files, data={"kind": kind})
    response.raise_for_status()
    return response.content


def test_heat_map_overlays_ssim_or_absolute_difference(
    page: Page, photos: Photos, server_url: str, artifacts: Path
) -> None:
    """In the review (batch) the map is asked of POST /compare/map, once per pair and kind."""
    choose(page, photos.reference, photos.review)
    assert submit(page) == "done"
    page.click(f'[data-name="{photos.colour.name}"] button.row-open')
    maps: dict[str, bytes] = {}
    for kind, legend in (("ssim", "0: different"), ("abs", "0: identical")):
        with page.expect_response(lambda r: r.url.endswith("/compare/map")) as answer:
            if kind == "ssim":
                page.click("button[data-view=heatmap]")
            else:
                page.click("button[data-map-kind=abs]")
        assert answer.value.headers["x-map-kind"] == kind
        maps[kind] = api_map(server_url, photos.reference, photos.colour, kind)
        page.wait_for_selector(f"img[data-image=map][data-map-kind={kind}]")
        assert page.text_content(".legend-low") == legend
        size = page.eval_on_selector(
            "img[data-image=map]", "m => [m.naturalWidth, m.naturalHeight]"
        )
        assert size == [96, 64], "the map is at the compared size"
        set_slider(page, "heat_opacity", 100)
        assert differ(drawn(page, "heatmap"), zoomed(maps[kind])) < TOLERANCE
    assert differ(zoomed(maps["ssim"]), zoomed(maps["abs"])) > TOLERANCE
    set_slider(page, "heat_opacity", 75)
    page.locator("#viewer").screenshot(path=str(artifacts / "review-heatmap.png"))

    set_slider(page, "heat_opacity", 0)
    assert differ(drawn(page, "heatmap"), zoomed(photos.colour.read_bytes())) < TOLERANCE
    asked: list[str] = []
    page.on("request", lambda request: asked.append(request.url))
    page.click("button[data-map-kind=ssim]")  # asked once already: not again
    page.wait_for_selector("img[data-image=map][data-map-kind=ssim]")
    assert not [url for url in asked if url.endswith("/compare/map")]


def test_views_and_sliders_work_from_the_keyboard(page: Page, photos: Photos) -> None:
    open_pair(page, photos, photos.colour)
    page.focus("button[type=submit]")
    for _ in range(20):
        page.keyboard.press("Tab")
        if page.evaluate("document.activeElement.dataset.view") == "swipe":
            break
    else:
        raise AssertionError("Tab never reached the Swipe button")
    outline = page.evaluate("getComputedStyle(document.activeElement).outlineStyle")
    assert outline == "solid", "focus is visible"
    page.keyboard.press("Space")
    assert page.get_attribute("button[data-view=swipe]", "aria-pressed") == "true"
    assert page.get_attribute("#viewer", "data-view") == "swipe"
    for _ in range(10):
        page.keyboard.press("Tab")
        if page.evaluate("document.activeElement.name") == "swipe":
            break
    else:
        raise AssertionError("Tab never reached the swipe slider")
    page.keyboard.press("ArrowLeft")
    assert page.input_value("input[name=swipe]") == "49"
    assert page.text_content("output[for=swipe]") == "49 %"
