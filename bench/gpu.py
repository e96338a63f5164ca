"""The GPU path, measured in one short device call. Results go to ``--out/gpu.json`` after every
section (a timeout keeps what was measured) and to stdout as Markdown.

    python3 bench/gpu.py --quick --out "$OUT"      # preflight only: about 30 s
    python3 bench/gpu.py --out "$OUT"              # everything: about 4 minutes on an H100

The device machine's image lacks the web stack and piq: ``bench/gpu_wheels.sh`` (here, once)
fills ``.whl/py311`` and ``.whl/py312``; the device call installs the set for its Python (the
single call is in docs/benchmarks.md, GPU section). Without them the HTTP rows are skipped.

Sections (``--sections``; each skipped, with a note, once ``--budget-s`` would be exceeded):

* ``preflight``: the card, torch, CUDA and cuDNN versions, which optional packages are there,
  a forward pass in fp32 and bf16 at 64 px and a pinned upload, each timed.
* ``sweep``: ``Scorer.score`` pairs/s by batch size at 224 and 512 px (every pair its own
  reference), fp32 and bf16 eager, bf16 compiled at 224 (batches up to 16); the bare forward
  pass on the same rows beside it (``share_of_bare``: what the metrics, the host copy and the
  transfer leave of the model's rate) and the peak memory.
* ``overlap``: the batch worker kept saturated (distinct pairs, all queued at once) with
  ``SIMSCORE_OVERLAP_BATCHES`` off and on, interleaved (``--overlap-rounds``), at each side and
  at batches 8 and 32, fp32 and bf16 eager: pairs/s and the ratio on/off that decides the
  setting's default.
* ``deviation``: bf16, fp16 and fp32 with TF32 against strict fp32 (TF32 off) on real
  photographs (``bench/precision.py``'s pairs).
* ``cudnn``: ``cudnn.benchmark`` off, then on, with aspect-ratio traffic (many shapes, each seen
  a few times): first sight of a shape (autotuning) and repeat visits.
* ``table``: ``bench/engine.py``'s table on the GPU: plain and tuned model alone, the service over
  HTTP in fp32 and bf16 (compiled), piq.

Weights are the seeded random VGG19: throughput does not depend on the values.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path
from typing import Any, cast

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from app.batching import Batcher
from app.models.vgg import VGGFeatures
from app.models.weights import load_features
from app.scoring import ModelRunner, PairRequest, PairScores, Scorer
from app.scoring.device import configure_cuda
from app.vocabulary import Precision
from bench import engine, precision
from bench.common import Results, distinct_pairs, header, load_average, median_seconds, table

SECTIONS = ("preflight", "sweep", "overlap", "deviation", "cudnn", "table")
OVERLAP_BATCHES_PER_RUN = 8  # batches queued at once per overlap measurement
COMPILED_MAX_BATCH = 16  # the compiled sweep warms up (compiles) row counts 1 to 2 x this
HTTP_PACKAGES = ("fastapi", "uvicorn", "pydantic_settings", "multipart", "httpx", "piq")
# Aspect-ratio traffic: (width, height) as uploads keep them, after the 1024 px cap.
ASPECT_SHAPES = (
    (640, 480), (480, 640), (1024, 768), (768, 1024), (800, 600), (600, 400), (1024, 576),
    (576, 1024), (512, 384), (720, 540), (960, 640), (400, 300),
)  # fmt: skip


def preflight(device: torch.device) -> dict[str, Any]:
    """Versions, packages, and a forward pass per precision at 64 px (seconds, first and next)."""
    cuda = device.type == "cuda"
    info: dict[str, Any] = {
        "gpu": torch.cuda.get_device_name(device) if cuda else f"none ({device}: a smoke test)",
        "memory_gib": (
            round(torch.cuda.get_device_properties(device).total_memory / 2**30, 1) if cuda else 0
        ),
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version(),
        "python": sys.version.split()[0],
        "packages": {name: importlib.util.find_spec(name) is not None for name in HTTP_PACKAGES},
    }
    extractor = _extractor()
    for name in ("fp32", "bf16"):
        runner = ModelRunner(extractor, device=device, precision=_precision(name))
        started = time.perf_counter()
        images = runner.upload([torch.rand(3, 64, 64)] * 4, [torch.rand(3, 64, 64)] * 4)
        runner.forward(images)
        runner.synchronize()
        first = time.perf_counter() - started
        again = median_seconds(partial(runner.forward, images), repeats=5, device=device)
        info[f"forward_{name}_ms"] = {"first": round(first * 1000), "next": round(again * 1000, 2)}
    return info


def sweep(
    device: torch.device,
    sides: Sequence[int],
    batches: Sequence[int],
    deadline: float,
    compiled_too: bool,
) -> list[dict[str, Any]]:
    extractor = _extractor()
    rows: list[dict[str, Any]] = []
    modes: list[tuple[str, bool]] = [("fp32", False), ("bf16", False)]
    if compiled_too:
        modes.append(("bf16", True))
    for side in sides:
        pool = distinct_pairs(side, max(batches))
        for name, compiled in modes:
            if compiled and side != sides[0]:
                continue
            runner = ModelRunner(
                extractor, device=device, precision=_precision(name), compile_model=compiled
            )
            sizes = [b for b in batches if b <= COMPILED_MAX_BATCH] if compiled else batches
            if compiled:
                started = time.monotonic()
                runner.warm_up([(side, side)], max(sizes))
                print(f"compiled {side} px in {time.monotonic() - started:.0f} s", flush=True)
            scorer = Scorer(runner)
            for batch in sizes:
                row: dict[str, Any] = {"side": side, "precision": name, "compiled": compiled}
                row["batch"] = batch
                rows.append(row)
                if time.monotonic() > deadline:
                    row["status"] = "skipped (budget)"
                    continue
                row.update(_sweep_row(runner, scorer, pool[:batch], device))
                print(row, flush=True)
                if row["status"] == "OOM":
                    break
    return rows


def _sweep_row(
    runner: ModelRunner, scorer: Scorer, pairs: list[PairRequest], device: torch.device
) -> dict[str, Any]:
    n = len(pairs)
    cuda = device.type == "cuda"
    try:
        if cuda:
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats(device)
        seconds = median_seconds(partial(scorer.score, pairs), repeats=5, device=device)
        peak = torch.cuda.max_memory_allocated(device) if cuda else 0
        images = runner.upload([p.reference for p in pairs], [p.candidate for p in pairs])
        bare = median_seconds(partial(runner.forward, images), repeats=5, device=device)
    except torch.OutOfMemoryError:
        torch.cuda.empty_cache()
        return {"status": "OOM"}
    return {
        "status": "ok",
        "pairs_per_s": round(n / seconds, 1),
        "ms_per_batch": round(seconds * 1000, 2),
        "bare_pairs_per_s": round(n / bare, 1),
        "share_of_bare": round(bare / seconds, 3),
        "peak_gib": round(peak / 2**30, 2),
    }


def overlap(
    device: torch.device, sides: Sequence[int], batches: Sequence[int], rounds: int, deadline: float
) -> list[dict[str, Any]]:
    """Pairs/s of a saturated batch worker without and with overlap, rounds interleaved."""
    extractor = _extractor()
    rows: list[dict[str, Any]] = []
    for side in sides:
        for name in ("fp32", "bf16"):
            scorers = {
                on: Scorer(
                    ModelRunner(extractor, device=device, precision=_precision(name), overlap=on)
                )
                for on in (False, True)
            }
            for batch in batches:
                row: dict[str, Any] = {"side": side, "precision": name, "batch": batch}
                rows.append(row)
                if time.monotonic() > deadline:
                    row["status"] = "skipped (budget)"
                    continue
                pairs = distinct_pairs(side, batch * OVERLAP_BATCHES_PER_RUN)
                rates: dict[bool, list[float]] = {False: [], True: []}
                try:
                    for _ in range(rounds):
                        for on, scorer in scorers.items():
                            rates[on].append(asyncio.run(_saturated(scorer, on, pairs, batch)))
                except torch.OutOfMemoryError:
                    row["status"] = "OOM"
                    torch.cuda.empty_cache()
                    break
                off, with_overlap = statistics.median(rates[False]), statistics.median(rates[True])
                row.update(
                    status="ok",
                    overlap_runs=scorers[True].runner.overlap,
                    off_pairs_per_s=round(off, 1),
                    on_pairs_per_s=round(with_overlap, 1),
                    on_over_off=round(with_overlap / off, 3),
                )
                print(row, flush=True)
    return rows


async def _saturated(scorer: Scorer, overlap: bool, pairs: list[PairRequest], batch: int) -> float:
    """Pairs/s of one batch worker given ``pairs`` all at once (after two warm-up batches)."""
    batcher: Batcher[PairRequest, PairScores] = Batcher(
        scorer.score,
        group_key=lambda pair: pair.shape,
        max_batch_size=batch,
        max_wait_s=0.0,
        queue_size=len(pairs),
        launcher=scorer.launch if overlap else None,
    )
    batcher.start()
    try:
        deadline = time.monotonic() + 600
        await asyncio.gather(*batcher.submit_many(pairs[: 2 * batch], deadline=deadline))
        started = time.perf_counter()
        await asyncio.gather(*batcher.submit_many(pairs, deadline=deadline))
        return len(pairs) / (time.perf_counter() - started)
    finally:
        batcher.close()


def deviation(device: torch.device, side: int) -> list[dict[str, Any]]:
    """Each precision (and TF32) against strict fp32, on the precision benchmark's pairs."""
    extractor = _extractor()
    pairs, _ = precision.photo_pairs(side, precision.PHOTOS[:4], precision.DISTORTIONS, (0.25, 1.0))
    configure_cuda(tf32=False, cudnn_benchmark=False)
    strict = precision.score_all(Scorer(ModelRunner(extractor, device=device)), pairs, 16)
    out = []
    for name in ("fp32+tf32", "bf16", "fp16"):
        configure_cuda(tf32=name == "fp32+tf32", cudnn_benchmark=False)
        runner = ModelRunner(extractor, device=device, precision=_precision(name.split("+")[0]))
        scores = precision.score_all(Scorer(runner), pairs, 16)
        _, data = precision.deviation_rows(strict, scores)
        out.append({"precision": name, "identical_exact": precision.identical_exact(scores[-1])})
        out[-1].update({f"{k}_{m}": v[m] for k, v in data.items() for m in v})
    configure_cuda(tf32=False, cudnn_benchmark=False)
    return out


def cudnn_benchmark(
    device: torch.device, batch: int, visits: int, scale: float
) -> list[dict[str, Any]]:
    """``cudnn.benchmark`` off, then on: the same stream of aspect-ratio batches (``scale``
    shrinks the shapes, for a smoke test)."""
    extractor = _extractor()
    shapes = [(max(16, round(w * scale)), max(16, round(h * scale))) for w, h in ASPECT_SHAPES]
    stream: list[list[PairRequest]] = []
    for visit in range(visits):
        for width, height in shapes:
            crop = (slice(None), slice(0, height), slice(0, width))
            pairs = distinct_pairs(max(width, height), batch, first_seed=visit * batch)
            stream.append([PairRequest(p.reference[crop], p.candidate[crop]) for p in pairs])
    out = []
    for on in (False, True):
        configure_cuda(tf32=False, cudnn_benchmark=on)
        scorer = Scorer(ModelRunner(extractor, device=device))
        seconds = []
        for pairs in stream:
            started = time.perf_counter()
            scorer.score(pairs)
            seconds.append(time.perf_counter() - started)
        first, repeat = seconds[: len(ASPECT_SHAPES)], seconds[len(ASPECT_SHAPES) :]
        out.append(
            {
                "cudnn_benchmark": on,
                "shapes": len(ASPECT_SHAPES),
                "batch": batch,
                "first_visit_ms_median": round(1000 * statistics.median(first), 1),
                "first_visit_ms_max": round(1000 * max(first), 1),
                "repeat_ms_median": round(1000 * statistics.median(repeat), 1) if repeat else None,
                "total_s": round(sum(seconds), 2),
            }
        )
        print(out[-1], flush=True)
    configure_cuda(tf32=False, cudnn_benchmark=False)
    return out


def _extractor() -> VGGFeatures:
    features, _ = load_features("random", seed=0)
    return VGGFeatures(features)


def _precision(name: str) -> Precision:
    if name not in ("fp32", "bf16", "fp16"):
        raise ValueError(name)
    return cast(Precision, name)


def markdown(rows: Sequence[dict[str, Any]]) -> str:
    if not rows:
        return "(none)"
    columns = list(dict.fromkeys(key for row in rows for key in row))
    cells = [[_cell(row.get(c, "")) for c in columns] for row in rows]
    return table(columns, cells)


def _cell(value: object) -> str:
    if isinstance(value, float):
        return f"{value:.3g}" if abs(value) < 1 else f"{value:.1f}"
    return str(value)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("results/gpu"))
    parser.add_argument("--device", default="cuda", help="cpu: a smoke test of this script")
    parser.add_argument("--quick", action="store_true", help="the preflight only (seconds)")
    parser.add_argument("--sections", default=",".join(SECTIONS))
    parser.add_argument("--budget-s", type=float, default=270.0, help="skip sections past it")
    parser.add_argument("--sides", default="224,512")
    parser.add_argument("--batch-sizes", default="1,4,8,16,32,64")
    parser.add_argument("--overlap-batch-sizes", default="8,32")
    parser.add_argument("--overlap-rounds", type=int, default=3)
    parser.add_argument("--cudnn-batch", type=int, default=4)
    parser.add_argument("--cudnn-visits", type=int, default=3)
    parser.add_argument("--cudnn-scale", type=float, default=1.0, help="shrink the shapes")
    parser.add_argument(
        "--compiled",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="sweep: bf16 compiled",
    )
    parser.add_argument("--table-pairs", type=int, default=32, help="max batch of the table")
    parser.add_argument("--table-clients", type=int, default=64)
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        print("bench/gpu.py needs CUDA (--device cpu: a smoke test of the script)", file=sys.stderr)
        return 2
    started = time.monotonic()
    deadline = started + args.budget_s
    sections = ["preflight"] if args.quick else args.sections.split(",")
    print(header("simscore GPU benchmark", device), flush=True)
    results = Results(args.out, "gpu", {"argv": sys.argv, "load_average": load_average()})
    sides = [int(s) for s in args.sides.split(",")]
    batches = [int(b) for b in args.batch_sizes.split(",")]
    runs: dict[str, Callable[[], Any]] = {
        "preflight": lambda: preflight(device),
        "sweep": lambda: sweep(device, sides, batches, deadline, args.compiled),
        "overlap": lambda: overlap(
            device,
            sides,
            [int(b) for b in args.overlap_batch_sizes.split(",")],
            args.overlap_rounds,
            deadline,
        ),
        "deviation": lambda: deviation(device, sides[0]),
        "cudnn": lambda: cudnn_benchmark(
            device, args.cudnn_batch, args.cudnn_visits, args.cudnn_scale
        ),
        "table": lambda: _table(args),
    }
    for section in sections:
        if section != "preflight" and time.monotonic() > deadline:
            results.add(section, "skipped: past --budget-s")
            print(f"## {section}: skipped (past --budget-s)\n", flush=True)
            continue
        begun = time.monotonic()
        value = runs[section]()
        results.add(section, value)
        text = value[0] if isinstance(value, tuple) else markdown(_rows(value))
        print(f"## {section} ({time.monotonic() - begun:.0f} s)\n\n{text}\n", flush=True)
    print(f"total {time.monotonic() - started:.0f} s; JSON in {results.path}", flush=True)
    return 0


def _rows(value: object) -> list[dict[str, Any]]:
    if isinstance(value, dict):
        return [{"key": k, "value": v} for k, v in value.items()]
    if isinstance(value, list):
        return value
    return [{"value": value}]


def _table(args: argparse.Namespace) -> tuple[str, dict[str, Any]] | str:
    missing = [name for name in HTTP_PACKAGES if importlib.util.find_spec(name) is None]
    if missing:
        return f"skipped: {', '.join(missing)} not installed (bench/gpu_wheels.sh)"
    table_args = engine.parse_args(
        [
            f"--device={args.device}",
            "--side=224",
            f"--pairs={args.table_pairs}",
            f"--clients={args.table_clients}",
            "--rounds=2",
            "--batches=10",
            "--http-seconds=10",
        ]
    )
    args.out.mkdir(parents=True, exist_ok=True)
    return engine.service_table(table_args, args.out)


if __name__ == "__main__":
    sys.exit(main())
