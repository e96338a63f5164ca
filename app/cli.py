"""``simscore serve | compare | fetch-weights | make-random-weights``.

``simscore compare`` runs the service's own pipeline (decode pool, batcher, scorer) in-process
and prints the service's response schema, so the command line and ``POST /compare`` cannot give
different answers. With the OpenTelemetry variables set it is traced like the service, as one
``simscore compare`` span that continues ``--traceparent`` (or ``TRACEPARENT``) when given.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import json
import logging
import math
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from app import allocator
from app.config import Settings
from app.vocabulary import CSV_COLUMNS, SCORE_NAMES, SIZE_POLICIES, csv_row

if TYPE_CHECKING:
    from app.pipeline import CompareOptions, ComparePipeline

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".webp", ".gif", ".bmp", ".tif", ".tiff"}
NO_DEADLINE_S = 365 * 24 * 3600.0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="simscore", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="run the HTTP service (one model copy)")
    serve.add_argument("--host", default=None, help="default: SIMSCORE_HOST or 127.0.0.1")
    serve.add_argument("--port", type=int, default=None, help="default: SIMSCORE_PORT or 8000")

    compare = sub.add_parser("compare", help="score a pair, or every image in a folder, locally")
    compare.add_argument("reference", type=Path)
    compare.add_argument("candidate", type=Path, help="an image, or a folder of images")
    compare.add_argument("--json", action="store_true", help="print JSON (the API's shape)")
    compare.add_argument("--csv", type=Path, help="with a folder: write a CSV here")
    compare.add_argument(
        "--scores",
        "--metrics",
        dest="scores",
        default=None,
        help="the scores to compute, comma-separated (default all; --metrics is its old name)",
    )
    compare.add_argument("--size-policy", choices=list(SIZE_POLICIES), default=None)
    compare.add_argument(
        "--mask", type=Path, default=None, help="compare only where this image is nonzero"
    )
    _traceparent_argument(compare)

    fetch = sub.add_parser("fetch-weights", help="download the ImageNet VGG19 weights")
    fetch.add_argument("--out", type=Path, default=None, help="write a features-only file here")

    rand = sub.add_parser("make-random-weights", help="write a seeded random VGG19 (tests)")
    rand.add_argument("--out", type=Path, required=True)
    rand.add_argument("--seed", type=int, default=0)

    args = parser.parse_args(argv)
    try:
        settings = Settings()
    except ValidationError as exc:
        for error in exc.errors():
            where = ".".join(str(part) for part in error["loc"])
            name = f"SIMSCORE_{where.upper()}: " if where else ""
            print(f"simscore: invalid settings: {name}{error['msg']}", file=sys.stderr)
        return 2
    logging.basicConfig(
        level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s %(message)s"
    )
    # before torch or the server start a thread (see app.allocator); the rest of the setting
    # follows once the device is known (app.scoring.factory)
    tuning = args.command in ("serve", "compare") and _scores_on_cpu(settings)
    if tuning and not allocator.single_arena():
        logging.getLogger(__name__).info("allocator tuning not applied (not glibc)")
    if args.command == "serve":
        return _serve(settings, args.host, args.port)
    if args.command == "compare":
        return asyncio.run(_compare(settings, args))
    if args.command == "fetch-weights":
        return _fetch(args.out)
    return _make_random(args.out, args.seed)


def _traceparent_argument(compare: argparse.ArgumentParser) -> None:
    compare.add_argument(
        "--traceparent",
        default=os.environ.get("TRACEPARENT"),
        help="a W3C traceparent the run's trace continues (default: TRACEPARENT; tracing is on "
        "when the OTEL_* variables ask for it: README, Tracing)",
    )


def _scores_on_cpu(settings: Settings) -> bool:
    """Whether the single malloc arena applies: asked for, and the model may run on the CPU
    (``auto`` included: on a GPU node one arena costs nothing that shows)."""
    return settings.cpu_allocator_tuning and not settings.device.startswith("cuda")


def _serve(settings: Settings, host: str | None, port: int | None) -> int:
    from app.main import create_app
    from app.server import serve

    return serve(
        create_app(settings),
        settings,
        host=host or settings.host,
        port=port if port is not None else settings.port,
    )


async def _compare(settings: Settings, args: argparse.Namespace) -> int:
    from app.errors import SimscoreError
    from app.pipeline import CompareOptions, ComparePipeline
    from app.scoring import build_scorer
    from app.tracing import Tracing, continued
    from app.vocabulary import parse_scores

    try:
        mask = args.mask.read_bytes() if args.mask is not None else None
        options = CompareOptions(parse_scores(args.scores), args.size_policy, mask)
        reference = args.reference.read_bytes()
        candidates = _candidates(args.candidate)
        scorer, model = await asyncio.to_thread(build_scorer, settings)
    except (SimscoreError, OSError) as exc:
        print(f"simscore: {exc}", file=sys.stderr)
        return 2
    tracing = Tracing.from_environment()
    pipeline = ComparePipeline.build(settings, scorer, model, tracing=tracing)
    pipeline.start()
    caller = continued({"traceparent": args.traceparent, "tracestate": os.getenv("TRACESTATE")})
    try:
        with tracing.span("simscore compare", context=caller):
            if args.candidate.is_dir():
                return await _compare_folder(pipeline, reference, candidates, options, args)
            return await _compare_pair(pipeline, reference, candidates[0], options, args.json)
    finally:
        pipeline.close()
        tracing.shutdown()


def _candidates(path: Path) -> list[Path]:
    if not path.is_dir():
        path.stat()  # a missing file fails here, as an OSError
        return [path]
    return sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)


async def _compare_pair(
    pipeline: ComparePipeline,
    reference: bytes,
    candidate: Path,
    options: CompareOptions,
    as_json: bool,
) -> int:
    from app.api.schemas import compare_response
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
        return 2
    body = compare_response(comparison, pipeline.model, (time.monotonic() - started) * 1000)
    if as_json:
        print(body.model_dump_json())
    else:
        scores = body.scores.model_dump()
        for name in SCORE_NAMES:
            print(f"{name:6s} {_fmt(scores[name])}")
    return 0


async def _compare_folder(
    pipeline: ComparePipeline,
    reference: bytes,
    paths: list[Path],
    options: CompareOptions,
    args: argparse.Namespace,
) -> int:
    """Every image of a folder against one reference, in chunks that enter the batcher
    together, as ``POST /compare/batch`` does."""
    from app.api.errors import map_exception
    from app.api.schemas import compare_response, model_out
    from app.pipeline import Comparison

    items: list[dict[str, Any]] = []
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
                body = compare_response(outcome, pipeline.model, 0.0).model_dump(mode="json")
                items.append({"candidate": path.name, **body})
            else:
                mapped = map_exception(outcome)
                if mapped.status == 500:
                    raise outcome
                error = {"status": mapped.status, "detail": mapped.detail}
                items.append({"candidate": path.name, "error": error})
        _progress(len(items), len(paths), started)
    if args.json:
        model = model_out(pipeline.model).model_dump(mode="json")
        print(json.dumps({"results": items, "model": model}))
    else:
        _print_table(items)
    if args.csv is not None:
        write_csv(items, args.csv)
    return 1 if any("error" in item for item in items) else 0


def write_csv(items: list[dict[str, Any]], out: Path) -> None:
    """``vocabulary.CSV_COLUMNS``, one row per candidate (the web page exports the same)."""
    with out.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(CSV_COLUMNS)
        for item in items:
            error = item.get("error")
            if error is None:
                writer.writerow(csv_row(item["candidate"], item))
            else:
                writer.writerow(csv_row(item["candidate"], None, error["detail"]))


def _print_table(items: list[dict[str, Any]]) -> None:
    print(" ".join(f"{name:>10s}" for name in SCORE_NAMES) + "  candidate")
    for item in items:
        if "error" in item:
            print(f"{'error':>10s} {item['error']['detail']}  {item['candidate']}")
        else:
            scores = item["scores"]
            values = " ".join(f"{_fmt(scores[name]):>10s}" for name in SCORE_NAMES)
            print(f"{values}  {item['candidate']}")


def _fmt(value: float | None) -> str:
    return "null" if value is None or not math.isfinite(value) else f"{value:.6g}"


def _progress(done: int, total: int, started: float) -> None:
    if total <= 1:
        return
    width = 30
    filled = int(width * done / max(total, 1))
    rate = done / max(time.monotonic() - started, 1e-9)
    end = "\n" if done >= total else ""
    sys.stderr.write(f"\r[{'#' * filled}{'.' * (width - filled)}] {done}/{total} {rate:.1f}/s{end}")
    sys.stderr.flush()


def _fetch(out: Path | None) -> int:
    from app.errors import WeightsError
    from app.models.weights import fetch_imagenet

    try:
        path, digest = fetch_imagenet(out)
    except WeightsError as exc:
        print(f"simscore: {exc}", file=sys.stderr)
        return 2
    print(f"{digest}  {path}")
    return 0


def _make_random(out: Path, seed: int) -> int:
    from app.models.weights import random_state_dict, save_state_dict

    digest = save_state_dict(random_state_dict(seed), out)
    print(f"{digest}  {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
