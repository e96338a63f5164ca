"""``simscore serve | compare | fetch-weights | make-random-weights``."""

from __future__ import annotations

import argparse
import csv
import json
import logging
import math
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from app.config import Settings

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".webp", ".gif", ".bmp", ".tif", ".tiff"}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="simscore", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="run the HTTP service (one model copy)")
    serve.add_argument("--host", default=None, help="default: SIMSCORE_HOST or 127.0.0.1")
    serve.add_argument("--port", type=int, default=None, help="default: SIMSCORE_PORT or 8000")

    compare = sub.add_parser("compare", help="score a pair, or every image in a folder, locally")
    compare.add_argument("reference", type=Path)
    compare.add_argument("candidate", type=Path, help="an image, or a folder of images")
    compare.add_argument("--json", action="store_true", help="print JSON")
    compare.add_argument("--csv", type=Path, help="with a folder: write a CSV here")
    compare.add_argument("--metrics", default=None, help="comma-separated subset (default all)")
    compare.add_argument("--size-policy", choices=["resize", "strict"], default=None)

    fetch = sub.add_parser("fetch-weights", help="download the ImageNet VGG19 weights")
    fetch.add_argument("--out", type=Path, default=None, help="write a features-only file here")

    rand = sub.add_parser("make-random-weights", help="write a seeded random VGG19 (tests)")
    rand.add_argument("--out", type=Path, required=True)
    rand.add_argument("--seed", type=int, default=0)

    args = parser.parse_args(argv)
    settings = Settings()
    logging.basicConfig(
        level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s %(message)s"
    )
    if args.command == "serve":
        return _serve(settings, args.host, args.port)
    if args.command == "compare":
        return _compare(settings, args)
    if args.command == "fetch-weights":
        return _fetch(args.out)
    return _make_random(args.out, args.seed)


def _serve(settings: Settings, host: str | None, port: int | None) -> int:
    from app.main import create_app
    from app.server import serve

    return serve(
        create_app(settings),
        settings,
        host=host or settings.host,
        port=port if port is not None else settings.port,
    )


def _compare(settings: Settings, args: argparse.Namespace) -> int:
    from app.engine import build_scorer
    from app.errors import SimscoreError
    from app.imaging import prepare_candidate, prepare_reference
    from app.pipeline import parse_metrics
    from app.reference_cache import reference_key
    from app.scoring import PairRequest, PairScores, iter_batches

    try:
        metrics = parse_metrics(args.metrics)
        scorer, model = build_scorer(settings)
        ref = prepare_reference(
            args.reference.read_bytes(), max_pixels=settings.max_pixels, max_side=settings.max_side
        )
    except (SimscoreError, OSError) as exc:
        print(f"simscore: {exc}", file=sys.stderr)
        return 2
    policy = args.size_policy or settings.default_size_policy
    ref_key = reference_key(ref.tensor, f"max_side={settings.max_side}")
    paths = (
        sorted(p for p in args.candidate.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if args.candidate.is_dir()
        else [args.candidate]
    )
    rows: list[dict[str, Any]] = []
    pending: list[tuple[Path, Any]] = []
    failures = 0
    for path in paths:
        try:
            cand = prepare_candidate(
                path.read_bytes(),
                ref,
                max_pixels=settings.max_pixels,
                max_side=settings.max_side,
                size_policy=policy,
            )
            pending.append((path, cand))
        except (SimscoreError, OSError) as exc:
            failures += 1
            rows.append({"candidate": str(path), "error": str(exc)})
    done = 0
    started = time.monotonic()
    for chunk in iter_batches(pending, settings.max_batch_size):
        pairs = [PairRequest(ref.tensor, c.tensor, metrics, ref_key) for _, c in chunk]
        scores: list[PairScores] = scorer.score(pairs)
        for (path, cand), s in zip(chunk, scores, strict=True):
            rows.append(_row(path, s, cand.resized or ref.resized, ref.width, ref.height))
        done += len(chunk)
        if len(paths) > 1:
            _progress(done, len(pending), started)
    model_fields = {
        "name": model.name,
        "weights": model.weights,
        "sha256": model.sha256,
        "device": model.device,
        "precision": model.precision,
    }
    if len(paths) == 1 and not args.candidate.is_dir():
        row = rows[0]
        if "error" in row:
            print(f"simscore: {row['error']}", file=sys.stderr)
            return 2
        if args.json:
            print(json.dumps({**_nested(row), "model": model_fields}))
        else:
            for key in ("vgg", "style", "ssim", "mse", "psnr"):
                print(f"{key:6s} {_fmt(row[key])}")
        return 0
    _write_table(rows, args.csv, args.json, model_fields)
    return 1 if failures else 0


def _row(path: Path, s: Any, resized: bool, width: int, height: int) -> dict[str, Any]:
    psnr = s.psnr if s.psnr is not None and math.isfinite(s.psnr) else None
    return {
        "candidate": str(path),
        "vgg": s.vgg,
        "style": s.style,
        "ssim": s.ssim,
        "mse": s.mse,
        "psnr": psnr,
        "vgg_layers": s.vgg_layers,
        "style_layers": s.style_layers,
        "width": width,
        "height": height,
        "resized": resized,
    }


def _nested(row: dict[str, Any]) -> dict[str, Any]:
    """The same shape as the HTTP API's response."""
    return {
        "scores": {k: row[k] for k in ("vgg", "style", "ssim", "mse", "psnr")},
        "layers": {"vgg": row["vgg_layers"], "style": row["style_layers"]},
        "image": {"width": row["width"], "height": row["height"], "resized": row["resized"]},
    }


def _write_table(
    rows: list[dict[str, Any]], out: Path | None, as_json: bool, model: dict[str, str]
) -> None:
    columns = ["candidate", "vgg", "style", "ssim", "mse", "psnr", "resized", "error"]
    if as_json:
        items = [
            {"candidate": r["candidate"], "error": r["error"]}
            if "error" in r
            else {"candidate": r["candidate"], **_nested(r)}
            for r in rows
        ]
        print(json.dumps({"results": items, "model": model}))
    if out is not None:
        with out.open("w", newline="") as handle:
            writer = csv.DictWriter(handle, columns, extrasaction="ignore")
            writer.writeheader()
            writer.writerows(rows)
    if not as_json:
        print(" ".join(f"{c:>10s}" for c in columns[1:6]) + "  candidate")
        for r in rows:
            if "error" in r:
                print(f"{'error':>10s} {r['error']}  {r['candidate']}")
            else:
                print(" ".join(f"{_fmt(r[c]):>10s}" for c in columns[1:6]) + f"  {r['candidate']}")


def _fmt(value: float | None) -> str:
    return "null" if value is None else f"{value:.6g}"


def _progress(done: int, total: int, started: float) -> None:
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
