"""``simscore serve | compare | fetch-weights [--backbone NAME] | make-random-weights``.

``simscore compare`` runs the service's own pipeline (decode pool, batcher, scorer) in-process
and prints the service's response schema, so the command line and ``POST /compare`` cannot give
different answers. With ``--threshold`` (or SIMSCORE_THRESHOLDS) it exits 0 when every pair
passes, 1 when one fails (or, with a folder, a candidate cannot be read), and 2 on a usage error.
With the OpenTelemetry variables set it is traced like the service, as one
``simscore compare`` span that continues ``--traceparent`` (or ``TRACEPARENT``) when given.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from app import allocator
from app.config import Settings
from app.verdicts import directions_text
from app.vocabulary import DEFAULT_SCORE_NAMES, SCORE_NAMES, SIZE_POLICIES

if TYPE_CHECKING:
    pass


def _parser() -> argparse.ArgumentParser:
    """The command line's arguments."""
    parser = argparse.ArgumentParser(prog="simscore", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="run the HTTP service (one model copy)")
    serve.add_argument("--host", default=None, help="default: SIMSCORE_HOST or 127.0.0.1")
    serve.add_argument("--port", type=int, default=None, help="default: SIMSCORE_PORT or 8000")

    _add_compare(sub)

    fetch = sub.add_parser("fetch-weights", help="download a backbone's ImageNet weights")
    fetch.add_argument(
        "--backbone",
        default="vgg19",
        help="vgg19 (default), alexnet, vgg16 (app.models.registry), or all",
    )
    fetch.add_argument("--out", type=Path, default=None, help="write a features-only file here")

    rand = sub.add_parser("make-random-weights", help="write a seeded random VGG19 (tests)")
    rand.add_argument("--out", type=Path, required=True)
    rand.add_argument("--seed", type=int, default=0)

    return parser


def _add_compare(sub: Any) -> None:
    """``simscore compare``'s arguments."""
    compare = sub.add_parser(
        "compare",
        help="score a pair, or every image in a folder, locally",
        epilog="exit status: 0 when every pair is scored and passes its thresholds; 1 when one "
        "fails them or, with a folder, a candidate cannot be read; 2 on a usage error (a bad "
        "condition, a missing file, a single candidate that cannot be read)",
    )
    compare.add_argument("reference", type=Path)
    compare.add_argument("candidate", type=Path, help="an image, or a folder of images")
    compare.add_argument("--json", action="store_true", help="print JSON (the API's shape)")
    compare.add_argument("--csv", type=Path, help="with a folder: write a CSV here")
    compare.add_argument(
        "--scores",
        "--metrics",
        dest="scores",
        default=None,
        help="the scores to compute, comma-separated: "
        f"{', '.join(SCORE_NAMES)} (default {','.join(DEFAULT_SCORE_NAMES)}; the others "
        "need their backbone's weights, see `simscore fetch-weights`; --metrics is its old name)",
    )
    compare.add_argument("--size-policy", choices=list(SIZE_POLICIES), default=None)
    compare.add_argument(
        "--mask", type=Path, default=None, help="compare only where this image is nonzero"
    )
    compare.add_argument(
        "--threshold",
        action="append",
        default=None,
        metavar="COND",
        help="a condition every pair must meet, <score><=<number> or <score>>=<number> "
        f"(inclusive; {directions_text()}); repeatable, or comma-separated "
        "('vgg<=0.05,ssim>=0.92'). Exit 1 when one fails. Default: SIMSCORE_THRESHOLDS; "
        "--threshold '' turns that off",
    )
    compare.add_argument(
        "--junit",
        type=Path,
        default=None,
        metavar="PATH",
        help="write a JUnit XML report here: a testcase per candidate, a failure naming the "
        "failed conditions and the scores, an error for a candidate that cannot be read",
    )
    _viewing_arguments(compare)
    _traceparent_argument(compare)


def _viewing_arguments(compare: argparse.ArgumentParser) -> None:
    """FLIP's viewing conditions (only flip uses them; the reference tool's by default)."""
    viewing = compare.add_argument_group("FLIP's viewing conditions (give --ppd or the others)")
    viewing.add_argument("--ppd", type=float, default=None, help="pixels per degree (1 to 600)")
    viewing.add_argument("--distance-m", type=float, default=None, help="default 0.7")
    viewing.add_argument("--monitor-width-m", type=float, default=None, help="default 0.7")
    viewing.add_argument("--monitor-width-px", type=float, default=None, help="default 3840")


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
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
        from app.cli_compare import compare as run_compare

        return asyncio.run(run_compare(settings, args))
    if args.command == "fetch-weights":
        return _fetch(args.backbone, args.out)
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


def _fetch(name: str, out: Path | None) -> int:
    from app.errors import WeightsError
    from app.models.registry import BACKBONES
    from app.models.weights import fetch_imagenet

    if name != "all" and name not in BACKBONES:
        print(
            f"simscore: unknown backbone {name!r}; choose from {', '.join(BACKBONES)} or all",
            file=sys.stderr,
        )
        return 2
    if name == "all" and out is not None:
        print(
            "simscore: --out writes one backbone's file: name it with --backbone", file=sys.stderr
        )
        return 2
    status = 0
    for backbone in BACKBONES.values() if name == "all" else [BACKBONES[name]]:
        try:
            path, digest = fetch_imagenet(out, backbone)
        except WeightsError as exc:
            print(f"simscore: {exc}", file=sys.stderr)
            status = 2
            continue
        print(f"{digest}  {path}")
    return status


def _make_random(out: Path, seed: int) -> int:
    from app.models.weights import random_state_dict, save_state_dict

    digest = save_state_dict(random_state_dict(seed), out)
    print(f"{digest}  {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
