"""``simscore compare REF CAND|FOLDER``: the service's own pipeline (decode pool, batcher,
scorer) run in-process on files; what it prints and writes is ``app.cli_output``. With the
OpenTelemetry variables set it is traced like the service, as one ``simscore compare`` span
that continues ``--traceparent`` (or ``TRACEPARENT``) when given.

Imported only when the command runs (``app.cli`` must start no thread before the allocator
setting), and it imports the model code only once the arguments are checked.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from app import cli_output
from app.cli_output import Row
from app.config import Settings
from app.junit import write_junit
from app.verdicts import Thresholds, parse_thresholds

if TYPE_CHECKING:
    from app.pipeline import CompareOptions, ComparePipeline, Comparison

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".webp", ".gif", ".bmp", ".tif", ".tiff"}
NO_DEADLINE_S = 365 * 24 * 3600.0


async def compare(settings: Settings, args: argparse.Namespace) -> int:
    from app.api.provenance import model_out
    from app.errors import SimscoreError
    from app.pipeline import CompareOptions, ComparePipeline
    from app.scores.flip_viewing import resolve_ppd
    from app.scoring import build_scorer
    from app.tracing import Tracing, continued
    from app.vocabulary import SCORE_NAMES, parse_scores

    try:
        thresholds = _thresholds(settings, args.threshold)
        mask = args.mask.read_bytes() if args.mask is not None else None
        scores = parse_scores(args.scores)
        if thresholds is not None:
            scores |= {name for name in SCORE_NAMES if name in thresholds.scores}
        ppd = resolve_ppd(
            ppd=args.ppd,
            distance_m=args.distance_m,
            monitor_width_m=args.monitor_width_m,
            monitor_width_px=args.monitor_width_px,
        )
        options = CompareOptions(scores, args.size_policy, mask, ppd=ppd)
        reference = args.reference.read_bytes()
        candidates = _candidates(args.candidate)
        scorer, model = await asyncio.to_thread(build_scorer, settings)
        scorer.catalog.check(options.scores)  # an unavailable score: one line, exit 2
    except (SimscoreError, OSError) as exc:
        print(f"simscore: {exc}", file=sys.stderr)
        return 2
    tracing = Tracing.from_environment()
    pipeline = ComparePipeline.build(settings, scorer, model, tracing=tracing)
    pipeline.start()
    model_json = model_out(model).model_dump(mode="json")
    caller = continued({"traceparent": args.traceparent, "tracestate": os.getenv("TRACESTATE")})
    try:
        started = time.monotonic()
        with tracing.span("simscore compare", context=caller):
            if args.candidate.is_dir():
                rows = await _compare_folder(pipeline, reference, candidates, options, thresholds)
            else:
                row = await _compare_pair(pipeline, reference, candidates[0], options, thresholds)
                if row is None:
                    return 2
                rows = [row]
    except SimscoreError as exc:  # the folder's request as a whole: its reference, its mask
        print(f"simscore: {exc}", file=sys.stderr)
        return 2
    finally:
        pipeline.close()
        tracing.shutdown()
    _report(rows, args, thresholds, time.monotonic() - started, model_json)
    return cli_output.exit_status(rows)


def _thresholds(settings: Settings, given: list[str] | None) -> Thresholds | None:
    """``--threshold`` (each, or comma-separated; only blank ones: none), else
    SIMSCORE_THRESHOLDS."""
    if given is None:
        return settings.default_thresholds
    return parse_thresholds(",".join(t for t in given if t.strip()), field="--threshold")


def _candidates(path: Path) -> list[Path]:
    if not path.is_dir():
        path.stat()  # a missing file fails here, as an OSError
        return [path]
    return sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)


def _row(
    pipeline: ComparePipeline,
    name: str,
    comparison: Comparison,
    thresholds: Thresholds | None,
    total_ms: float,
) -> Row:
    from app.api.schemas import compare_response
    from app.api.verdicts import score_values

    body = compare_response(comparison, pipeline.model, total_ms, thresholds)
    verdict = thresholds.verdict(score_values(comparison.scores)) if thresholds else None
    return Row(name, body.model_dump(mode="json"), verdict=verdict)


async def _compare_pair(
    pipeline: ComparePipeline,
    reference: bytes,
    candidate: Path,
    options: CompareOptions,
    thresholds: Thresholds | None,
) -> Row | None:
    """One pair's row; None (reported) when it cannot be scored."""
    from app.errors import SimscoreError

    started = time.monotonic()
    try:
        comparison = await pipeline.compare(
            reference,
            candidate.read_bytes(),
            options,
            deadline=started + NO_DEADLINE_S,
        )
    except (SimscoreError, OSError) as exc:
        print(f"simscore: {exc}", file=sys.stderr)
        return None
    total_ms = (time.monotonic() - started) * 1000
    return _row(pipeline, candidate.name, comparison, thresholds, total_ms)


async def _compare_folder(
    pipeline: ComparePipeline,
    reference: bytes,
    paths: list[Path],
    options: CompareOptions,
    thresholds: Thresholds | None,
) -> list[Row]:
    """Every image of a folder against one reference, in chunks that enter the batcher
    together, as ``POST /compare/batch`` does."""
    from app.api.errors import map_exception
    from app.pipeline import Comparison

    rows: list[Row] = []
    chunk_size = pipeline.settings.max_batch_candidates
    started = time.monotonic()
    for first in range(0, len(paths), chunk_size):
        chunk = paths[first : first + chunk_size]
        outcomes = await pipeline.compare_many(
            reference,
            [p.read_bytes() for p in chunk],
            options,
            deadline=time.monotonic() + NO_DEADLINE_S,
        )
        for path, outcome in zip(chunk, outcomes, strict=True):
            if isinstance(outcome, Comparison):
                rows.append(_row(pipeline, path.name, outcome, thresholds, 0.0))
            else:
                mapped = map_exception(outcome)
                if mapped.status == 500:
                    raise outcome
                error = {"status": mapped.status, "detail": mapped.detail}
                rows.append(Row(path.name, error=error))
        _progress(len(rows), len(paths), started)
    return rows


def _report(
    rows: list[Row],
    args: argparse.Namespace,
    thresholds: Thresholds | None,
    time_s: float,
    model: dict[str, Any],
) -> None:
    """Print the rows (JSON or a table) and write the CSV and JUnit files asked for."""
    folder = args.candidate.is_dir()
    summary = cli_output.summary(rows, thresholds)
    if args.json and folder:
        document = {"results": [row.item() for row in rows], "model": model}
        print(json.dumps(document | ({"summary": summary} if summary else {})))
    elif args.json:
        print(json.dumps(rows[0].body))
    elif folder:
        cli_output.print_table(rows, thresholds)
    else:
        cli_output.print_pair(rows[0])
    if args.csv is not None:
        cli_output.write_csv(rows, args.csv)
    if args.junit is not None:
        suite = cli_output.junit_suite(rows, args.reference.name, thresholds, time_s)
        write_junit(args.junit, suite)
    if summary is not None and folder and not args.json:
        print(
            f"{summary['passed']} passed, {summary['failed']} failed, {summary['errors']} "
            "could not be scored",
            file=sys.stderr,
        )


def _progress(done: int, total: int, started: float) -> None:
    if total <= 1:
        return
    width = 30
    filled = int(width * done / max(total, 1))
    rate = done / max(time.monotonic() - started, 1e-9)
    end = "\n" if done >= total else ""
    sys.stderr.write(f"\r[{'#' * filled}{'.' * (width - filled)}] {done}/{total} {rate:.1f}/s{end}")
    sys.stderr.flush()
