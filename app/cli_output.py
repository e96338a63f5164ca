"""What ``simscore compare`` shows and writes for its candidates: the table, the CSV
(``vocabulary.CSV_COLUMNS``, as the web page exports), the JUnit report, the summary and the
exit status (0: every candidate scored and passed; 1: one failed its thresholds or could not be
scored).

Nothing here imports torch: each candidate arrives as the API's JSON body and, with thresholds,
its ``app.verdicts.Verdict`` (which keeps the scores the conditions were checked on)."""

from __future__ import annotations

import csv
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from app.junit import Case, Problem, Suite
from app.verdicts import Thresholds, Verdict
from app.vocabulary import csv_columns, csv_row, score_columns

EXIT_PASSED = 0
EXIT_FAILED = 1


@dataclass(frozen=True)
class Row:
    """One candidate: the API's JSON body of its pair and its verdict, or its error."""

    candidate: str
    body: dict[str, Any] | None = None
    error: dict[str, Any] | None = None  # {"status": ..., "detail": ...}
    verdict: Verdict | None = None

    def item(self) -> dict[str, Any]:
        """The ``--json`` item: the candidate's name and its body, or its error."""
        if self.body is None:
            return {"candidate": self.candidate, "error": self.error}
        return {"candidate": self.candidate, **self.body}

    @property
    def passed(self) -> bool:
        return self.body is not None and (self.verdict is None or self.verdict.passed)


def exit_status(rows: Sequence[Row]) -> int:
    return EXIT_PASSED if all(row.passed for row in rows) else EXIT_FAILED


def summary(rows: Sequence[Row], thresholds: Thresholds | None) -> dict[str, int] | None:
    """``{"passed", "failed", "errors"}`` as ``POST /compare/batch`` counts them; None without
    thresholds."""
    if thresholds is None:
        return None
    errors = sum(row.body is None for row in rows)
    passed = sum(row.body is not None and row.passed for row in rows)
    return {"passed": passed, "failed": len(rows) - passed - errors, "errors": errors}


def verdict_text(row: Row) -> str:
    """``pass``, ``FAIL ssim>=0.92 (ssim = 0.873)``, ``error`` or empty (no thresholds)."""
    if row.body is None:
        return "error"
    if row.verdict is None:
        return ""
    return "pass" if row.verdict.passed else f"FAIL {row.verdict.described()}"


def fmt(value: float | None) -> str:
    return "null" if value is None or not math.isfinite(value) else f"{value:.6g}"


def print_pair(row: Row) -> None:
    """One scored pair: a score a line (the default scores, then any other computed), then its
    verdict when there are thresholds."""
    scores = (row.body or {}).get("scores", {})
    names = score_columns([row.body])
    width = max(6, *(len(name) for name in names))
    for name in names:
        print(f"{name:{width}s} {fmt(scores.get(name))}")
    if row.verdict is not None:
        print(f"{'verdict':{width}s} {verdict_text(row)}")


def print_table(rows: Sequence[Row], thresholds: Thresholds | None) -> None:
    """A column a score (the default scores, then any other a row has), then the verdict (with
    thresholds) and the candidate's name."""
    verdicts = thresholds is not None
    names = score_columns([row.body for row in rows])
    print(
        " ".join(f"{name:>10s}" for name in names)
        + (f"  {'verdict':7s}" if verdicts else "")
        + "  candidate"
    )
    for row in rows:
        if row.body is None:
            detail = (row.error or {}).get("detail", "error")
            shown = f"{'error':>10s} {detail}  {row.candidate}"
        else:
            scores = row.body["scores"]
            values = " ".join(f"{fmt(scores.get(name)):>10s}" for name in names)
            verdict = f"  {'pass' if row.passed else 'FAIL':7s}" if verdicts else ""
            failed = f"  {row.verdict.described()}" if row.verdict and not row.passed else ""
            shown = f"{values}{verdict}  {row.candidate}{failed}"
        print(shown)


def write_csv(rows: Sequence[Row], out: Path) -> None:
    """One row per candidate, the columns of ``vocabulary.csv_columns`` for the scores the rows
    have (``score_columns``: ``CSV_COLUMNS`` for the default scores; the web page exports the
    same)."""
    names = score_columns([row.body for row in rows])
    with out.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(csv_columns(names))
        for row in rows:
            if row.body is not None:
                writer.writerow(csv_row(row.candidate, row.body, scores=names))
            else:
                detail = row.error["detail"] if row.error else "error"
                writer.writerow(csv_row(row.candidate, None, detail, scores=names))


def _scores_line(body: dict[str, Any]) -> str:
    """The scores of a body (the defaults, then any other computed), full precision:
    ``vgg=0.0123 style=... psnr=null``."""
    names = score_columns([body])
    return " ".join(f"{name}={body['scores'].get(name)!r}" for name in names).replace(
        "None", "null"
    )


def junit_case(row: Row, classname: str) -> Case:
    """A candidate as a test case: a failure naming its failed conditions and their scores, an
    error for a candidate that could not be scored."""
    if row.body is None:
        error = row.error or {"status": 0, "detail": "error"}
        problem = Problem(str(error["detail"]), f"HTTP {error['status']}", str(error["detail"]))
        return Case(row.candidate, classname, error=problem)
    time_s = row.body["timing_ms"]["compute_ms"] / 1000
    output = _scores_line(row.body)
    if row.verdict is None or row.verdict.passed:
        return Case(row.candidate, classname, time_s, output=output)
    message = row.verdict.message()
    failure = Problem(message, "threshold", f"{message}\n{output}")
    return Case(row.candidate, classname, time_s, failure=failure, output=output)


def junit_suite(
    rows: Sequence[Row], reference: str, thresholds: Thresholds | None, time_s: float
) -> Suite:
    """The report of one run: a test case per candidate, named by its file name."""
    classname = f"simscore.{Path(reference).stem}"
    properties = {"reference": reference, "thresholds": thresholds.text if thresholds else ""}
    cases = [junit_case(row, classname) for row in rows]
    return Suite(f"simscore compare {reference}", cases, time_s, properties)
