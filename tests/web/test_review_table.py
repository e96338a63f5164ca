"""Several candidates: one /compare/batch request, one table row per candidate (a failed one
with the server's words), sortable worst first, a row opens its pair."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from tests.web.support import (
    BROWSER_TEST,
    METRICS,
    Photos,
    choose,
    format_score,
    numbers_breaking_the_rule,
    pair_scores,
    row_names,
    submit,
    title_value,
)

if TYPE_CHECKING:
    from playwright.sync_api import Page

pytestmark = BROWSER_TEST

HIGHER_IS_WORSE = {"vgg", "style", "mse"}


def review(page: Page, reference: Path, candidates: Sequence[Path]) -> list[dict[str, Any]]:
    """Compare ``candidates`` with ``reference``; the batch items the page received."""
    choose(page, reference, candidates)
    with page.expect_response(lambda response: response.url.endswith("/compare/batch")) as answer:
        assert submit(page) == "done", page.text_content("#status")
    results: list[dict[str, Any]] = answer.value.json()["results"]
    return results


def expected_order(
    names: list[str], items: list[dict[str, Any]], metric: str, worst: bool
) -> list[str]:
    """Worst first (or best first), ties in the order given; failed candidates last."""
    scored = [(n, item) for n, item in zip(names, items, strict=True) if "error" not in item]
    failed = [n for n, item in zip(names, items, strict=True) if "error" in item]

    def value(pair: tuple[str, dict[str, Any]]) -> float:
        score = pair[1]["scores"][metric]
        return math.inf if score is None else float(score)  # a null psnr: identical, the best

    ordered = sorted(scored, key=value, reverse=(metric in HIGHER_IS_WORSE) == worst)
    return [n for n, _ in ordered] + failed


def test_three_candidates_one_broken(page: Page, photos: Photos, artifacts: Path) -> None:
    # Given in reverse: the page scores them in file-name order, as the command line does.
    items = review(page, photos.reference, photos.review[::-1])
    names = [path.name for path in photos.review]
    assert row_names(page) == names
    assert page.text_content("#status") == "Scored 3 candidates; 1 failed."
    assert page.locator("#review").is_visible()

    for name, item in zip(names, items, strict=True):
        row = page.locator(f'[data-candidate-row][data-name="{name}"]')
        assert row.locator("img.thumb").count() == 1
        if "error" in item:
            assert row.get_attribute("data-status") == "failed"
            assert row.locator("[data-metric]").count() == 0
            error = row.locator("[data-error]").text_content() or ""
            assert error == f"Error {item['error']['status']}: {item['error']['detail']}"
            assert "candidate image" in error
            continue
        for metric in METRICS:
            cell = row.locator(f"td[data-metric={metric}]")
            value = item["scores"][metric]
            assert cell.text_content() == format_score(metric, value, item["scores"]), metric
            assert title_value(cell.get_attribute("title") or "") == value, metric

    # The first scored candidate is open below the table.
    assert page.text_content("#pair-name") == names[0]
    assert page.get_attribute(f'[data-name="{names[0]}"]', "aria-current") == "true"
    assert numbers_breaking_the_rule(page) == []
    page.click("th[data-sort=vgg] button")  # the screenshot shows a sorted table
    page.locator("#review").screenshot(path=str(artifacts / "review-table.png"))


@pytest.mark.parametrize("metric", METRICS)
def test_a_header_sorts_worst_first_then_best_first(
    page: Page, photos: Photos, metric: str
) -> None:
    candidates = [*photos.review, photos.identical]  # identical: a null psnr, mse 0
    names = sorted(path.name for path in candidates)
    items = review(page, photos.reference, candidates)
    header = page.locator(f"th[data-sort={metric}]")

    header.locator("button").click()
    assert row_names(page) == expected_order(names, items, metric, worst=True)
    worst_is_larger = metric in HIGHER_IS_WORSE
    assert header.get_attribute("aria-sort") == ("descending" if worst_is_larger else "ascending")

    header.locator("button").focus()  # the header is a real button: the keyboard sorts too
    page.keyboard.press("Enter")
    assert row_names(page) == expected_order(names, items, metric, worst=False)
    assert header.get_attribute("aria-sort") == ("ascending" if worst_is_larger else "descending")
    assert row_names(page)[-1] == photos.broken.name
    others = [name for name in METRICS if name != metric]
    assert {page.get_attribute(f"th[data-sort={o}]", "aria-sort") for o in others} == {"none"}


def test_a_row_opens_its_pair(page: Page, photos: Photos) -> None:
    items = dict(
        zip(
            [path.name for path in photos.review],
            review(page, photos.reference, photos.review),
            strict=True,
        )
    )
    page.locator(f'[data-candidate-row][data-name="{photos.colour.name}"] td').first.click()
    assert page.text_content("#pair-name") == photos.colour.name
    scores = items[photos.colour.name]["scores"]
    for metric, (text, title) in pair_scores(page).items():
        assert text == format_score(metric, scores[metric], scores)
        assert title_value(title) == scores[metric]
    assert page.get_attribute(f'[data-name="{photos.colour.name}"]', "aria-current") == "true"
    assert page.locator("#viewer img[data-image=candidate]").first.is_visible()

    # From the keyboard: each row's name is a button.
    page.locator(f'[data-name="{photos.jpeg.name}"] button.row-open').focus()
    page.keyboard.press("Enter")
    assert page.text_content("#pair-name") == photos.jpeg.name

    # A failed candidate opens with the server's detail instead of scores and views.
    page.locator(f'[data-name="{photos.broken.name}"] button.row-open').click()
    assert page.text_content("#pair-name") == photos.broken.name
    error = page.locator("#pair-error")
    assert error.is_visible()
    assert items[photos.broken.name]["error"]["detail"] in (error.text_content() or "")
    assert page.locator("#viewer").is_hidden()
