"""What the browser tests share besides fixtures: where Chromium is, the page's number rule
written again in Python (to check the page against), and small page actions."""

from __future__ import annotations

import importlib.util
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from playwright.sync_api import Page

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


CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
WAIT_MS = 30_000
METRICS = ("vgg", "style", "ssim", "mse", "psnr")

# Every browser test module carries these marks.
BROWSER_TEST = [
    pytest.mark.slow,
    pytest.mark.skipif(
        not CHROMIUM.exists(),
        reason=f"{CHROMIUM} is missing: install Debian's chromium (`apt-get install chromium`, "
        "as .ci/run does) to run the browser tests; never `playwright install`",
    ),
    pytest.mark.skipif(
        importlib.util.find_spec("playwright") is None,
        reason="playwright is not installed (pip install -e '.[dev]')",
    ),
]


# --- the page's number rule, written independently of app/static/format.js -----------------


def _round(value: float, exponent: int) -> Decimal:
    """``value`` rounded to a multiple of ``10**exponent``, ties away from zero (as JavaScript's
    ``toFixed`` and ``toExponential`` round the exact binary value)."""
    return Decimal(value).quantize(Decimal(1).scaleb(exponent), rounding=ROUND_HALF_UP)


def format_number(value: float) -> str:
    """At most 4 significant digits: plain from 0.001 to 9999, else a short exponent form."""
    if value == 0:
        return "0"
    exponent = Decimal(value).adjusted()  # floor(log10(|value|))
    exponent = _round(value, exponent - 3).adjusted()  # 0.00099996 rounds up to 0.001000
    rounded = _round(value, exponent - 3)
    if -3 <= exponent < 4:
        return f"{rounded:f}"
    mantissa = f"{rounded.scaleb(-exponent):f}".rstrip("0").rstrip(".")
    return f"{mantissa}e{exponent}"


def format_score(name: str, value: float | None, scores: Mapping[str, Any]) -> str:
    """A score as the page must show it."""
    if value is None:
        return "identical" if name == "psnr" and scores.get("mse") == 0 else "\u2014"
    if name == "psnr":
        fixed = f"{_round(value, -1):f}"
        return f"{fixed if len(fixed) <= 5 else format_number(value)} dB"
    return format_number(value)


NUMBER = re.compile(r"(?<![\w.])[-\u2212]?(\d+(?:\.\d+)?(?:e[-+]?\d+)?)(?!\w|\.\d)")


def significant_digits(number: str) -> int:
    """Digits of a decimal or exponent form, leading zeros and the exponent left out."""
    mantissa = number.split("e")[0]
    return len(mantissa.replace(".", "").lstrip("0"))


# Text nodes a person sees: visible, outside <code> and outside [data-verbatim] (file names and
# the server's own words, shown as they are). Each comes with whether it is a psnr value.
VISIBLE_TEXT_JS = """() => {
  const found = [];
  const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
  for (let node = walker.nextNode(); node; node = walker.nextNode()) {
    const element = node.parentElement;
    const text = node.textContent.trim();
    if (!text || !element || element.closest("script, style, code, [data-verbatim]")) continue;
    if (!element.checkVisibility({ checkOpacity: true, checkVisibilityCSS: true })) continue;
    found.push([text, Boolean(element.closest("[data-metric=psnr]"))]);
  }
  return found;
}"""


def numbers_breaking_the_rule(page: Page) -> list[str]:
    """Every visible number with more than 4 significant digits, or a psnr over 5 characters;
    also asserts that the page shows numbers at all."""
    broken: list[str] = []
    seen = 0
    for text, is_psnr in page.evaluate(VISIBLE_TEXT_JS):
        for match in NUMBER.finditer(text):
            seen += 1
            number = match.group(1)
            if significant_digits(number) > 4 or (is_psnr and len(number) > 5):
                broken.append(f"{number!r} in {text!r}")
    assert seen > 10, "the scan found almost no numbers on the page"
    return broken


# --- page actions ----------------------------------------------------------------------------


def choose(page: Page, reference: Path, candidates: Sequence[Path]) -> None:
    page.set_input_files("input[name=reference]", str(reference))
    page.set_input_files("input[name=candidate]", [str(path) for path in candidates])


def submit(page: Page) -> str:
    """Press Compare and wait for the answer; the final ``#results[data-state]`` (the previous
    answer's state is cleared first, so it is never read as this one's)."""
    page.evaluate("document.getElementById('results').removeAttribute('data-state')")
    page.click("button[type=submit]")
    return wait_for_result(page)


def wait_for_result(page: Page) -> str:
    page.wait_for_selector(
        "#results[data-state=done], #results[data-state=error]", state="attached"
    )
    return page.get_attribute("#results", "data-state") or ""


def row_names(page: Page) -> list[str]:
    """The candidates' names, top to bottom, as the table shows them."""
    names: list[str] = page.eval_on_selector_all(
        "[data-candidate-row]", "rows => rows.map(row => row.dataset.name)"
    )
    return names


def pair_scores(page: Page) -> dict[str, tuple[str, str]]:
    """The pair view's scores: name -> (text, title)."""
    shown: dict[str, tuple[str, str]] = {}
    for name in METRICS:
        output = page.locator(f'#pair output[data-metric="{name}"]')
        shown[name] = (output.text_content() or "", output.get_attribute("title") or "")
    return shown


def title_value(title: str) -> float:
    """The full value a tooltip holds ("0.031041255220770836", "27.49888414516252 dB")."""
    return float(title.removesuffix(" dB"))
