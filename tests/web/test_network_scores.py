"""The review page and the opt-in scores: the picker from GET /scores (an unavailable score
disabled with the server's reason), their columns in the table (sortable, worst first), their
rows in the pair view, the CSV export with their columns, and the LPIPS and FLIP heat maps."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import pytest
from simscore_client.vocabulary import csv_columns, csv_row, score_columns

from devtools.images import decode_png
from devtools.servers import serve_in_thread
from devtools.settings import settings_for
from tests.web.support import (
    BROWSER_TEST,
    OpenPage,
    Photos,
    choose,
    format_score,
    row_names,
    submit,
    title_value,
)
from tests.web.test_diff_views import TOLERANCE, differ, drawn, set_slider, zoomed

if TYPE_CHECKING:
    from playwright.sync_api import Page

pytestmark = BROWSER_TEST
EXTRA = ("lpips", "dists")
DEFAULT = ("vgg", "style", "ssim", "mse", "psnr")


@pytest.fixture(scope="module")
def networks_url(weights_file: Path, backbone_files: dict[str, Path]) -> Iterator[str]:
    """A server with every backbone loaded from its seeded file."""
    settings = settings_for(
        weights_file,
        alexnet_weights=str(backbone_files["alexnet"]),
        vgg16_weights=str(backbone_files["vgg16"]),
    )
    with serve_in_thread(settings) as url:
        yield url


@pytest.fixture
def networks_page(open_page: OpenPage, networks_url: str) -> Page:
    page = open_page(networks_url)
    page.wait_for_selector(".score-choice[data-score=dists]", state="attached")  # GET /scores
    return page


def tick(page: Page, *names: str) -> None:
    page.click("#options summary")
    for name in names:
        page.check(f"input[name=scores][value={name}]")


def review(page: Page, photos: Photos) -> list[dict[str, Any]]:
    choose(page, photos.reference, photos.review)
    with page.expect_response(lambda r: r.url.endswith("/compare/batch")) as answer:
        assert submit(page) == "done", page.text_content("#status")
    results: list[dict[str, Any]] = answer.value.json()["results"]
    scored = [item["scores"] for item in results if "error" not in item]
    assert scored and all(set(s) == {*DEFAULT, *EXTRA} for s in scored)  # what was ticked
    assert all(s[name] is not None for s in scored for name in (*DEFAULT, *EXTRA) if name != "psnr")
    return results


def test_the_picker_lists_every_score_with_the_defaults_ticked(networks_page: Page) -> None:
    choices = networks_page.eval_on_selector_all(
        "input[name=scores]", "inputs => inputs.map(i => [i.value, i.checked, i.disabled])"
    )
    assert choices == [
        ["vgg", True, False], ["style", True, False], ["ssim", True, False],
        ["mse", True, False], ["psnr", True, False], ["lpips", False, False],
        ["lpips_vgg", False, False], ["dists", False, False], ["flip", False, False],
        ["ms_ssim", False, False],
    ]  # fmt: skip


def test_an_unavailable_score_is_disabled_with_the_servers_reason(
    page: Page, server_url: str
) -> None:
    """The default server has no AlexNet or VGG16: their scores cannot be ticked, the reason
    names the setting, and their heat-map kinds are not offered."""
    page.wait_for_selector(".score-choice[data-score=lpips] .score-unavailable", state="attached")
    assert page.is_disabled("input[name=scores][value=lpips]")
    reason = page.text_content(".score-choice[data-score=lpips] .score-unavailable") or ""
    assert "SIMSCORE_ALEXNET_WEIGHTS" in reason
    assert "simscore fetch-weights --backbone alexnet" in reason
    assert page.locator("button[data-map-kind=lpips]").is_hidden()


def test_the_table_and_the_pair_view_show_the_scores_asked_for(
    networks_page: Page, photos: Photos
) -> None:
    page = networks_page
    tick(page, *EXTRA)
    items = review(page, photos)
    names = [path.name for path in photos.review]
    headers = page.eval_on_selector_all("th[data-sort]", "ths => ths.map(th => th.dataset.sort)")
    assert headers == ["vgg", "style", "ssim", "mse", "psnr", *EXTRA]
    for name, item in zip(names, items, strict=True):
        if "error" in item:
            continue
        for metric in EXTRA:
            cell = page.locator(f'[data-name="{name}"] td[data-metric={metric}]')
            value = item["scores"][metric]
            assert cell.text_content() == format_score(metric, value, item["scores"])
            assert title_value(cell.get_attribute("title") or "") == value
    # lower is more alike: worst first puts the largest lpips on top, the failed one last
    page.click("th[data-sort=lpips] button")
    assert page.get_attribute("th[data-sort=lpips]", "aria-sort") == "descending"
    scored = [
        (n, i["scores"]["lpips"]) for n, i in zip(names, items, strict=True) if "error" not in i
    ]
    assert row_names(page)[: len(scored)] == [n for n, _ in sorted(scored, key=lambda p: -p[1])]
    page.click(f'[data-name="{scored[0][0]}"] button.row-open')
    for metric in EXTRA:
        output = page.locator(f'#pair output[data-metric="{metric}"]')
        value = dict(zip(names, items, strict=True))[scored[0][0]]["scores"][metric]
        assert title_value(output.get_attribute("title") or "") == value


def test_the_csv_has_the_extra_columns_as_the_command_line_writes_them(
    networks_page: Page, photos: Photos
) -> None:
    page = networks_page
    tick(page, *EXTRA)
    items = review(page, photos)
    with page.expect_download() as info:
        page.click("a[data-export=csv]")
    payload = Path(info.value.path()).read_bytes()
    scores = score_columns([None if "error" in item else item for item in items])
    assert scores == ("vgg", "style", "ssim", "mse", "psnr", *EXTRA)
    out = io.StringIO(newline="")
    writer = csv.writer(out)
    writer.writerow(csv_columns(scores))
    for path, item in zip(photos.review, items, strict=True):
        error = item.get("error")
        writer.writerow(
            csv_row(path.name, None, error["detail"], scores=scores)
            if error
            else csv_row(path.name, item, scores=scores)
        )
    assert payload == out.getvalue().encode()


def test_the_lpips_and_flip_heat_maps_come_from_the_server(
    networks_page: Page, photos: Photos, networks_url: str
) -> None:
    page = networks_page
    choose(page, photos.reference, [photos.colour])
    assert submit(page) == "done"
    page.click("button[data-view=heatmap]")
    for kind in ("lpips", "lpips_vgg", "flip"):  # flip: its error map in magma
        button = page.locator(f"button[data-map-kind={kind}]")
        assert button.is_visible()
        with page.expect_response(lambda r: r.url.endswith("/compare/map")) as answer:
            button.click()
        assert answer.value.headers["x-map-kind"] == kind
        page.wait_for_selector(f"img[data-image=map][data-map-kind={kind}]")
        assert page.text_content(".legend-low") == "0: identical"
        direct = httpx.post(
            f"{networks_url}/compare/map",
            files={
                "reference": ("r.png", photos.reference.read_bytes()),
                "candidate": ("c.png", photos.colour.read_bytes()),
            },
            data={"map_kind": kind},
            timeout=60,
        )
        assert direct.status_code == 200
        assert decode_png(direct.content).shape == (64, 96, 3)
        set_slider(page, "heat_opacity", 100)
        assert differ(drawn(page, "heatmap"), zoomed(direct.content)) < TOLERANCE
