"""The export links: the CSV is byte for byte what ``simscore compare REF FOLDER --csv`` writes
for the same answers (``simscore_client.vocabulary.csv_row`` through ``csv.writer``), the JSON
holds every answer as the API gave it. Also the page's number formatting, in its own module,
against Python."""

from __future__ import annotations

import csv
import io
import json
import os
import random
import struct
import subprocess
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from simscore_client.vocabulary import CSV_COLUMNS, SCORE_NAMES, csv_row

from devtools.servers import CLI, ROOT
from tests.web.support import BROWSER_TEST, Photos, choose, format_number, format_score, submit

if TYPE_CHECKING:
    from playwright.sync_api import Page

pytestmark = BROWSER_TEST


def cli_csv(names: list[str], items: list[dict[str, Any]]) -> bytes:
    """The CSV the command line writes for these answers: one row per candidate."""
    out = io.StringIO(newline="")
    writer = csv.writer(out)
    writer.writerow(CSV_COLUMNS)
    for name, item in zip(names, items, strict=True):
        error = item.get("error")
        writer.writerow(csv_row(name, None, error["detail"]) if error else csv_row(name, item))
    return out.getvalue().encode()


def download(page: Page, kind: str) -> tuple[str, bytes]:
    with page.expect_download() as info:
        page.click(f"a[data-export={kind}]")
    return info.value.suggested_filename, Path(info.value.path()).read_bytes()


def test_csv_equals_the_command_line_csv(page: Page, photos: Photos, tmp_path: Path) -> None:
    quoted = tmp_path / 'blur, "soft".png'  # a comma and quotes: the name is quoted in the CSV
    quoted.write_bytes(photos.colour.read_bytes())
    candidates = [photos.jpeg, photos.broken, photos.identical, quoted]
    names = sorted(path.name for path in candidates)  # the command line's folder order
    choose(page, photos.reference, candidates)
    with page.expect_response(lambda response: response.url.endswith("/compare/batch")) as answer:
        assert submit(page) == "done"
    items = answer.value.json()["results"]

    page.click("th[data-sort=ssim] button")  # the export keeps the scored order, not the view's
    filename, payload = download(page, "csv")
    assert filename == "simscore-golden.csv"
    assert payload == cli_csv(names, items)
    rows = list(csv.reader(io.StringIO(payload.decode(), newline="")))
    assert rows[0] == list(CSV_COLUMNS)
    assert [row[0] for row in rows[1:]] == names
    by_name = {row[0]: dict(zip(CSV_COLUMNS, row, strict=True)) for row in rows[1:]}
    assert by_name["identical.png"]["mse"] == "0.0"
    assert by_name["identical.png"]["psnr"] == ""
    assert by_name[photos.broken.name]["vgg"] == ""
    assert "not a PNG, JPEG" in by_name[photos.broken.name]["error"]
    assert payload.count(b"\r\n") == len(candidates) + 1


def test_json_holds_every_answer_as_the_api_gave_it(page: Page, photos: Photos) -> None:
    choose(page, photos.reference, photos.review)
    with page.expect_response(lambda response: response.url.endswith("/compare/batch")) as answer:
        assert submit(page) == "done"
    items = answer.value.json()["results"]
    filename, payload = download(page, "json")
    assert filename == "simscore-golden.json"
    exported = json.loads(payload)
    assert exported["results"] == [
        {"candidate": path.name, **item} for path, item in zip(photos.review, items, strict=True)
    ]
    assert exported["model"] == items[0]["model"]


def test_a_single_pair_exports_one_row(page: Page, photos: Photos) -> None:
    choose(page, photos.reference, [photos.jpeg])
    with page.expect_response(lambda response: response.url.endswith("/compare")) as answer:
        assert submit(page) == "done"
    body = answer.value.json()
    _, payload = download(page, "csv")
    assert payload == cli_csv([photos.jpeg.name], [body])


def test_python_float_repr_in_javascript(page: Page) -> None:
    """``pythonFloatRepr`` writes what Python's ``repr(float)`` writes, exponents included."""
    rng = random.Random(12)
    values = [
        *(0.0, -0.0, 1.0, 0.1, 0.1 + 0.2, 1e-05, 2.5e-07, 0.0001, 0.00012345, 123.456),
        *(1e16, 1e15, 9999999999999998.0, 1234567890123456.0, 12345678901234567.0),
        *(5e-324, 2.2250738585072014e-308, 1.7976931348623157e308, 1e22, 1e-7, 100.0),
        *(0.031041255220770836, 27.49888414516252, 1.1429807273088954e-05, 4.056109048633516e-08),
        *(rng.uniform(0, 1) * 10 ** rng.randint(-12, 20) for _ in range(1000)),
        *(struct.unpack("<d", rng.randbytes(8))[0] for _ in range(3000)),
    ]
    values = [v for v in values if v == v and abs(v) != float("inf")]
    written = page.evaluate(
        """async (values) => {
            const { pythonFloatRepr } = await import("./static/format.js");
            return values.map(pythonFloatRepr);
        }""",
        values,
    )
    mismatches = [(repr(v), js) for v, js in zip(values, written, strict=True) if js != repr(v)]
    assert mismatches == []


def test_the_number_rule_matches_its_python_statement(page: Page) -> None:
    """``formatScore`` against the rule written again in Python (tests/web/support.py): at most
    4 significant digits, psnr in dB with one decimal, "identical" for a null psnr."""
    rng = random.Random(7)
    values = [
        *(0.0, 1.0, 0.5, 0.001, 0.0009999, 0.00099996, 9999.0, 9999.6, 12345.0, -0.1234, 0.5625),
        *(3.1e-5, 1.1429807273088954e-05, 2e-12, 0.031041255220770836, 123.456),
        *(rng.uniform(0, 1) * 10 ** rng.randint(-9, 6) for _ in range(2000)),
    ]
    cases: list[tuple[str, float | None, dict[str, Any]]] = [
        *(("vgg", v, {}) for v in values),
        *(("psnr", rng.uniform(0, 120), {}) for _ in range(500)),
        *(("psnr", v, {}) for v in (27.25, 13.95, 99.95, 100.0, 123.45, 0.05)),
        ("psnr", None, {"mse": 0.0}),
        ("psnr", None, {"mse": None}),
        ("ssim", None, {}),
    ]
    shown = page.evaluate(
        """async (cases) => {
            const { formatScore } = await import("./static/format.js");
            return cases.map(([name, value, scores]) => formatScore(name, value, scores));
        }""",
        cases,
    )
    expected = [format_score(name, value, scores) for name, value, scores in cases]
    assert [c for c, s, e in zip(cases, shown, expected, strict=True) if s != e] == []
    assert shown[-3:] == ["identical", "\u2014", "\u2014"]
    assert format_number(3.1e-5) == "3.1e-5"
    assert format_number(0.00099996) == "0.001000"
    assert format_number(12345.0) == "1.235e4"  # a tie: away from zero, as JavaScript rounds
    assert format_score("psnr", 27.25, {}) == "27.3 dB"


def test_csv_matches_the_command_line_run_on_the_same_files(
    page: Page, photos: Photos, tmp_path: Path, weights_file: Path
) -> None:
    """The real ``simscore compare REF FOLDER --csv`` on the files the page uploaded: the same
    rows and cells; scores equal to within the last bits (the page's answers may come from a
    batch or a cached reference the command line did not have: README, Scores)."""
    folder = tmp_path / "renders"
    folder.mkdir()
    for path in photos.review:
        (folder / path.name).write_bytes(path.read_bytes())
    choose(page, photos.reference, sorted(folder.iterdir()))
    assert submit(page) == "done"
    _, payload = download(page, "csv")
    out = tmp_path / "cli.csv"
    env = {**os.environ, "SIMSCORE_WEIGHTS": str(weights_file), "SIMSCORE_DEVICE": "cpu"}
    command = [*CLI, "compare", str(photos.reference), str(folder), "--csv", str(out)]
    done = subprocess.run(command, env=env, cwd=ROOT, capture_output=True, check=False)
    assert done.returncode == 1, done.stderr  # one candidate is broken
    page_rows = list(csv.reader(io.StringIO(payload.decode(), newline="")))
    cli_rows = list(csv.reader(out.open(newline="")))
    assert page_rows[0] == cli_rows[0] == list(CSV_COLUMNS)
    assert len(page_rows) == len(cli_rows) == len(photos.review) + 1
    for page_row, cli_row in zip(page_rows[1:], cli_rows[1:], strict=True):
        for column, ours, theirs in zip(CSV_COLUMNS, page_row, cli_row, strict=True):
            if column in SCORE_NAMES and ours and theirs:
                assert float(ours) == pytest.approx(float(theirs), rel=1e-5), column
            else:
                assert ours == theirs, column
