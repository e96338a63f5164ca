"""Thresholds on the review page: sent with the batch, a pass/fail badge per candidate (the
server's verdict, never the page's own), a filter that keeps those that did not pass, the
verdict in the pair view, the status line and both exports; a bad condition in words; the
server's default when the field is left empty."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from simscore_client.vocabulary import CSV_COLUMNS, csv_row

from devtools.servers import serve_in_thread
from devtools.settings import settings_for
from tests.web.support import BROWSER_TEST, OpenPage, Photos, choose, row_names, submit

if TYPE_CHECKING:
    from playwright.sync_api import Page

pytestmark = BROWSER_TEST

CONDITIONS = "mse<=0, psnr>=30"  # only the identical candidate passes


def enter_thresholds(page: Page, text: str) -> None:
    if page.get_attribute("#options", "open") is None:
        page.locator("#options summary").click()
    page.fill("#thresholds", text)


# Records the thresholds field of each form the page posts (Playwright does not expose a
# multipart body that holds files).
RECORD_FORMS_JS = """() => {
  window.sentThresholds = [];
  const send = window.fetch;
  window.fetch = (url, init) => {
    if (init && init.body instanceof FormData) {
      window.sentThresholds.push(init.body.get("thresholds"));
    }
    return send(url, init);
  };
}"""


def review(page: Page, photos: Photos, candidates: list[Path]) -> tuple[dict[str, Any], str | None]:
    """Compare; the batch answer and the thresholds field the page sent (None: not sent)."""
    page.evaluate(RECORD_FORMS_JS)
    choose(page, photos.reference, candidates)
    with page.expect_response(lambda response: response.url.endswith("/compare/batch")) as answer:
        assert submit(page) == "done", page.text_content("#status")
    body: dict[str, Any] = answer.value.json()
    (sent,) = page.evaluate("() => window.sentThresholds")
    return body, sent


def candidates(photos: Photos) -> list[Path]:
    return [photos.jpeg, photos.broken, photos.colour, photos.identical]


def test_badges_filter_and_pair_view_show_the_server_s_verdicts(
    page: Page, photos: Photos, artifacts: Path
) -> None:
    enter_thresholds(page, CONDITIONS)
    body, form = review(page, photos, candidates(photos))
    assert form == "mse<=0, psnr>=30"
    names = sorted(path.name for path in candidates(photos))
    items = dict(zip(names, body["results"], strict=True))
    expected = {
        name: "error" if "error" in item else ("pass" if item["verdict"]["passed"] else "fail")
        for name, item in items.items()
    }
    assert expected == {
        photos.identical.name: "pass",
        photos.jpeg.name: "fail",
        photos.colour.name: "fail",
        photos.broken.name: "error",
    }
    assert page.locator("th[data-column=verdict]").is_visible()
    for name, verdict in expected.items():
        row = page.locator(f'[data-candidate-row][data-name="{name}"]')
        assert row.get_attribute("data-verdict") == verdict
        badge = row.locator(".badge")
        assert badge.get_attribute("data-verdict") == verdict and badge.text_content() == verdict
        failed = row.locator(".failed-conditions")
        if verdict == "fail":
            assert failed.text_content() == ", ".join(items[name]["verdict"]["failed"])
            assert "mse<=0" in (failed.text_content() or "")
        else:
            assert failed.count() == 0
    assert page.text_content("#status") == (
        "Scored 4 candidates: 1 passed, 2 failed, 1 could not be scored."
    )

    summary = body["summary"]
    assert summary == {"passed": 1, "failed": 2, "errors": 1}
    assert page.text_content("[data-count=not-passed]") == "3"
    page.check("#failures-only")
    assert row_names(page) == [n for n in names if expected[n] != "pass"]
    page.locator("th[data-sort=mse] button").click()  # sorting keeps the filter
    assert set(row_names(page)) == {n for n in names if expected[n] != "pass"}
    page.locator("#review").screenshot(path=str(artifacts / "review-verdicts.png"))
    page.uncheck("#failures-only")
    assert sorted(row_names(page)) == names

    page.locator(f'[data-name="{photos.colour.name}"] button.row-open').click()
    verdict_line = page.locator("#pair-verdict")
    assert verdict_line.is_visible()
    assert verdict_line.locator(".badge").text_content() == "fail"
    failed_text = ", ".join(items[photos.colour.name]["verdict"]["failed"])
    assert verdict_line.locator("[data-failed]").text_content() == f"failed {failed_text}"
    page.locator(f'[data-name="{photos.identical.name}"] button.row-open').click()
    assert verdict_line.locator(".badge").text_content() == "pass"
    page.locator(f'[data-name="{photos.broken.name}"] button.row-open').click()
    assert verdict_line.is_hidden()  # the error says it all


def download(page: Page, kind: str) -> bytes:
    with page.expect_download() as info:
        page.click(f"a[data-export={kind}]")
    return Path(info.value.path()).read_bytes()


def test_the_exports_carry_the_verdicts(page: Page, photos: Photos) -> None:
    enter_thresholds(page, CONDITIONS)
    body, _ = review(page, photos, candidates(photos))
    names = sorted(path.name for path in candidates(photos))
    out = io.StringIO(newline="")
    writer = csv.writer(out)
    writer.writerow(CSV_COLUMNS)
    for name, item in zip(names, body["results"], strict=True):
        error = item.get("error")
        writer.writerow(csv_row(name, None, error["detail"]) if error else csv_row(name, item))
    payload = download(page, "csv")
    assert payload == out.getvalue().encode()
    rows = {r["candidate"]: r for r in csv.DictReader(io.StringIO(payload.decode()))}
    assert rows[photos.identical.name]["passed"] == "true"
    assert rows[photos.identical.name]["failed"] == ""
    assert rows[photos.jpeg.name]["passed"] == "false"
    assert rows[photos.jpeg.name]["failed"].startswith("mse<=0")
    assert rows[photos.broken.name]["passed"] == ""

    exported = json.loads(download(page, "json"))
    assert exported["summary"] == body["summary"]
    assert [item["verdict"] for item in exported["results"] if "error" not in item] == [
        item["verdict"] for item in body["results"] if "error" not in item
    ]


def test_a_single_pair_shows_its_verdict(page: Page, photos: Photos) -> None:
    enter_thresholds(page, "psnr>=30")
    choose(page, photos.reference, [photos.identical])
    assert submit(page) == "done"
    assert page.text_content("#status") == "Done: passed."
    assert page.locator("#pair-verdict .badge").text_content() == "pass"
    enter_thresholds(page, "mse<=0,ssim>=0.5")
    choose(page, photos.reference, [photos.jpeg])
    assert submit(page) == "done"
    assert page.text_content("#status") == "Done: failed mse<=0."


def test_a_bad_condition_is_shown_in_words(page: Page, photos: Photos) -> None:
    enter_thresholds(page, "vgg<0.05")
    choose(page, photos.reference, candidates(photos))
    assert submit(page) == "error"
    status = page.text_content("#status") or ""
    assert status.startswith("Error 422: thresholds: 'vgg<0.05'")
    assert "the operator must be <= or >=" in status


def test_without_thresholds_there_is_no_verdict_column(page: Page, photos: Photos) -> None:
    body, form = review(page, photos, candidates(photos))
    assert form is None
    assert "summary" not in body
    assert page.locator("th[data-column=verdict]").is_hidden()
    assert page.locator(".review-filter").is_hidden()
    assert page.locator("[data-candidate-row] .badge").count() == 0
    assert page.text_content("#status") == "Scored 4 candidates; 1 failed."


@pytest.fixture(scope="module")
def defaulted_url(weights_file: Path) -> Iterator[str]:
    with serve_in_thread(settings_for(weights_file, thresholds="mse<=0")) as url:
        yield url


def test_an_empty_field_leaves_the_server_s_default(
    open_page: OpenPage, defaulted_url: str, photos: Photos
) -> None:
    page = open_page(defaulted_url)
    body, form = review(page, photos, candidates(photos))
    assert form is None
    assert body["summary"] == {"passed": 1, "failed": 2, "errors": 1}
    assert page.locator("th[data-column=verdict]").is_visible()
    assert page.locator('[data-candidate-row][data-verdict="pass"]').count() == 1
