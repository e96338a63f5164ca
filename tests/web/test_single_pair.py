"""One reference, one candidate: the page shows the API's scores rounded to 4 significant
digits (every digit in the tooltip), the per-layer bars, the SSIM map at the compared size and
where the numbers come from."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import TYPE_CHECKING, Any

from PIL import Image

from tests.web.support import (
    BROWSER_TEST,
    METRICS,
    Photos,
    choose,
    format_number,
    format_score,
    numbers_breaking_the_rule,
    pair_scores,
    submit,
    title_value,
    wait_for_result,
)

if TYPE_CHECKING:
    from playwright.sync_api import Page

pytestmark = BROWSER_TEST


def compare_and_capture(page: Page, photos: Photos, candidate: Path) -> dict[str, Any]:
    """Compare the reference with ``candidate``; the JSON the page received."""
    choose(page, photos.reference, [candidate])
    with page.expect_response(lambda response: response.url.endswith("/compare")) as answer:
        assert submit(page) == "done", page.text_content("#status")
    body: dict[str, Any] = answer.value.json()
    return body


def test_scores_are_the_api_s_with_four_significant_digits(
    page: Page, photos: Photos, artifacts: Path
) -> None:
    body = compare_and_capture(page, photos, photos.jpeg)
    assert page.locator("#review").is_hidden(), "one candidate keeps the single-pair view"
    assert page.text_content("#pair-name") == photos.jpeg.name

    for name, (text, title) in pair_scores(page).items():
        value = body["scores"][name]
        assert value is not None, name
        assert text == format_score(name, value, body["scores"]), name
        assert title_value(title) == value, f"{name}: the tooltip holds every digit"
    assert pair_scores(page)["psnr"][0].endswith(" dB")

    for metric in ("vgg", "style"):
        cells = page.locator(f"#layers-{metric} tbody td.number")
        assert cells.count() == 5
        for i, (tap, value) in enumerate(body["layers"][metric].items()):
            assert cells.nth(i).text_content() == format_number(value), (metric, tap)
            assert title_value(cells.nth(i).get_attribute("title") or "") == value

    assert numbers_breaking_the_rule(page) == []
    page.screenshot(path=str(artifacts / "single-pair.png"), full_page=True)
    with Image.open(artifacts / "single-pair.png") as shot:
        assert shot.width >= 800


def test_provenance_is_shown_and_no_warning_for_real_weights(page: Page, photos: Photos) -> None:
    body = compare_and_capture(page, photos, photos.jpeg)
    model = body["model"]
    assert model["weights"] == "file"
    assert page.locator("[data-warning=random-weights]").is_hidden()
    provenance = page.locator("#provenance")
    assert provenance.is_visible()
    for field in ("name", "weights", "sha256", "device", "precision"):
        key = "model" if field == "name" else field
        assert page.text_content(f"[data-provenance={key}]") == model[field], field
    assert page.text_content("[data-provenance=size]") == "96\u00d764 px"


def test_the_ssim_map_comes_with_the_answer_at_the_compared_size(
    page: Page, photos: Photos
) -> None:
    body = compare_and_capture(page, photos, photos.jpeg)
    asked: list[str] = []
    page.on("request", lambda request: asked.append(request.url))
    page.click("button[data-view=heatmap]")
    page.wait_for_selector("[data-view-panel=heatmap][data-map-state=done]")
    assert not [url for url in asked if "/compare/map" in url], "the map came with /compare"
    source = page.get_attribute("img[data-image=map]", "src") or ""
    assert source == "data:image/png;base64," + body["map_png_base64"]
    size = page.eval_on_selector("img[data-image=map]", "m => [m.naturalWidth, m.naturalHeight]")
    assert size == [96, 64]
    assert base64.b64decode(source.split(",", 1)[1]).startswith(b"\x89PNG")
    assert page.get_attribute("img[data-image=map]", "data-map-kind") == "ssim"


def test_identical_images_read_identical_dropped_and_sent_from_the_keyboard(
    page: Page, photos: Photos
) -> None:
    """Files dropped on the pickers are used; the form submits from the keyboard."""
    payload = base64.b64encode(photos.reference.read_bytes()).decode()
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
            [f'[data-drop-for="{name}"]', payload, f"{name}.png"],
        )
        assert page.evaluate(f"document.querySelector('input[name={name}]').files.length") == 1
        page.locator(f"#{name}-preview").wait_for(state="visible")
    page.focus("button[type=submit]")
    page.keyboard.press("Enter")
    assert wait_for_result(page) == "done", page.text_content("#status")
    shown = pair_scores(page)
    assert shown["mse"][0] == "0"
    assert shown["ssim"][0] == "1.000"
    assert shown["psnr"][0] == "identical"
    assert "no finite PSNR" in shown["psnr"][1]


def test_server_errors_are_shown_in_words(page: Page, photos: Photos) -> None:
    choose(page, photos.reference, [photos.broken])
    assert submit(page) == "error"
    status = page.text_content("#status") or ""
    assert status.startswith("Error 400: ")
    assert "candidate image" in status
    assert page.locator("#pair").is_hidden()


def test_controls_are_labelled(page: Page) -> None:
    """Accessible names: each control can be found by its label, as a screen reader would."""
    assert page.get_by_label("Reference image").get_attribute("name") == "reference"
    candidates = page.get_by_label("Candidate images")
    assert candidates.get_attribute("name") == "candidate"
    assert candidates.get_attribute("multiple") is not None
    assert page.get_by_label("Mask").get_attribute("name") == "mask"
    assert page.get_by_label("API key").get_attribute("type") == "password"
    assert page.get_by_role("button", name="Compare", exact=True).get_attribute("type") == "submit"
    assert page.get_attribute("#status", "aria-live") == "polite"  # errors are announced
    for label, name in (
        ("Candidate shown left of the line", "swipe"),
        ("Candidate opacity over the reference", "opacity"),
        ("Heat map opacity", "heat_opacity"),
    ):
        slider = page.get_by_label(label)
        assert slider.get_attribute("name") == name
        assert slider.get_attribute("type") == "range"
    assert set(METRICS) == {
        page.get_attribute(f"th[data-sort={name}]", "data-sort") for name in METRICS
    }
