"""Engine benchmark: the service against the bare model and piq, where the time goes, compiled
kernels and start-up, SSIM. Prints Markdown (recorded in docs/benchmarks.md). Not a test.

    python bench/engine.py                     # every section on the CPU (about 15 min, 2 cores)
    python bench/engine.py --quick             # small sizes, one round, no compiling (< 1 min)
    python bench/engine.py --device cuda       # the same on a GPU (bench/gpu.py calls it)
    python bench/engine.py --sections table --side 224 --rounds 3

Sections (``--sections``, comma-separated):

* ``table``: pairs/s at ``--side`` px of the bare model as a user runs it (fp32, NCHW, default
  allocator), the tuned model alone (channels-last and the service's allocator setting), the
  service in fp32 and in bf16 over HTTP (``--clients`` closed-loop clients, every pair a distinct
  reference, reference cache off), and piq computing the same scores. Model rows run in fresh
  processes (``bench/contenders.py``); every row is measured ``--rounds`` times, interleaved
  with the others in a rotating order, and the median is shown. A precision the machine refuses
  (bf16 without AMX or AVX512-BF16) shows the server's start-up error.
* ``engine``: in one process, ``Scorer.score`` against ``ModelRunner.forward`` alone on the same
  tensors, and the engine's time split into its forward pass and the rest (the metrics).
* ``compile``: eager against compiled forward passes (fp32; bf16 where it runs natively), with
  the time the warm-up took to compile every row count of the shape.
* ``startup``: launch to ready of ``simscore serve`` compiling the warm shape, with a cold and
  then a warm inductor cache (``SIMSCORE_COMPILE_CACHE_DIR``), and with compilation off.
* ``ssim``: ``app.scores.ssim`` against pytorch_msssim and scikit-image, one pair.
* ``rss``: peak resident memory of this process after loading the model.
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from app.models.vgg import VGGFeatures
from app.models.weights import load_features
from app.scoring import ModelRunner, Scorer
from app.scoring.device import check_precision, cpu_flags, native_bf16, tune_cpu_allocator
from app.vocabulary import Precision
from bench.common import (
    Results,
    distinct_pairs,
    header,
    interleaved,
    load_average,
    median_seconds,
    peak_rss_mb,
    table,
)
from bench.contenders import Contender
from bench.http_load import LoadResult, refusal, run_load, service_env, serving, square_bodies
from devtools.servers import ServerProcess, serve_process, wait_ready

SECTIONS = ("table", "engine", "compile", "startup", "ssim", "rss")
QUICK = "table,engine,ssim,rss"  # compiling takes minutes on a CPU: not in --quick


def fast_precisions(device: torch.device) -> list[Precision]:
    """bf16 where the device runs it natively (else the service refuses it), fp32 always."""
    try:
        check_precision("bf16", device, cpu_flags())
    except Exception:
        return ["fp32"]
    return ["fp32", "bf16"]


# -- table -------------------------------------------------------------------------------------


def service_table(args: argparse.Namespace, out: Path) -> tuple[str, dict[str, Any]]:
    """Plain bare, tuned alone, service fp32 and bf16, piq: pairs/s and ratios (see above)."""
    device = args.device
    contenders = {
        PLAIN: Contender("plain", side=args.side, pairs=args.pairs, device=device),
        TUNED: Contender("tuned", side=args.side, pairs=args.pairs, device=device),
        PIQ: Contender("piq", side=args.side, pairs=args.pairs, device=device),
    }
    if "bf16" in fast_precisions(torch.device(device)):
        contenders["tuned model alone bf16, compiled"] = Contender(
            "tuned", side=args.side, pairs=args.pairs, device=device, precision="bf16", compile=True
        )
    bodies = square_bodies(args.side, max(2 * args.clients, 2 * args.pairs))
    rates: dict[str, list[float]] = {name: [] for name in contenders}
    notes: dict[str, str] = {}
    loads: dict[str, list[LoadResult]] = {}
    urls: dict[str, str] = {}
    pids: dict[str, int] = {}
    with contextlib.ExitStack() as stack:
        launched = {}
        for name, precision in SERVICE.items():  # both start at once; each waited for below
            env = service_env(
                device=device,
                precision=precision,
                max_batch_size=args.pairs,
                warmup_sides=args.side,
            )
            launched[name] = stack.enter_context(
                serve_process(env, out / f"server-{precision}.log", wait=False)
            )
        for name, server in launched.items():
            try:
                ready_s = wait_ready(server.url, 900, alive=partial(_alive, server))
            except RuntimeError:
                notes[name] = "refused at start-up: " + refusal(server.log())
                continue
            urls[name], rates[name], loads[name] = server.url, [], []
            pids[name] = server.process.pid
            notes[name] = f"ready {ready_s:.0f} s after launch"
        for contender in contenders.values():
            contender.wait_ready()
        names = list(rates)
        for k in range(args.rounds):
            for name in names[k % len(names) :] + names[: k % len(names)]:
                if name in contenders:
                    rates[name].append(contenders[name].run(args.batches))
                else:
                    load = run_load(
                        urls[name],
                        bodies,
                        clients=args.clients,
                        seconds=args.http_seconds,
                        pid=pids[name],
                    )
                    loads[name].append(load)
                    rates[name].append(load.pairs_per_s)
                print(f"round {k}: {name}: {rates[name][-1]:.3f} pairs/s", file=sys.stderr)
        for contender in contenders.values():
            contender.close()
    median = {name: statistics.median(values) for name, values in rates.items()}
    rows = []
    for name in [*rates, *(n for n in notes if n not in rates)]:
        note = notes.get(name, "")
        if name not in median:
            rows.append([name, "-", "-", "-", note])
            continue
        if name in loads:
            last = loads[name][-1]
            note += (
                f"; mean batch {last.mean_batch:.1f}, p50 {last.percentile_ms(0.5):.0f} ms, "
                f"{last.page_faults_per_pair:.0f} page faults/pair"
            )
        rows.append(
            [
                name,
                f"{median[name]:.3f}",
                f"{median[name] / median[PLAIN]:.2f}x",
                f"{median[name] / median[TUNED]:.2f}x",
                note.strip("; "),
            ]
        )
    text = table(["what", "pairs/s", "vs plain", "vs tuned", "notes"], rows)
    verdicts = _verdicts(median)
    data = {
        "rates": rates,
        "median": median,
        "notes": notes,
        "verdicts": verdicts,
        "loads": {name: [x.summary() for x in runs] for name, runs in loads.items()},
    }
    return text + "\n\n" + "\n".join(f"- {v}" for v in verdicts), data


def _alive(server: ServerProcess) -> bool:
    return server.process.poll() is None


PLAIN = "plain bare fp32 (NCHW, default allocator)"
TUNED = "tuned model alone fp32 (channels-last, allocator)"
PIQ = "piq, same scores"
SERVICE = {"service fp32 (HTTP)": "fp32", "service bf16 (HTTP)": "bf16"}


def _verdicts(median: dict[str, float]) -> list[str]:
    out = []
    if (fp32 := median.get("service fp32 (HTTP)")) is not None:
        out.append(
            f"service fp32 / tuned model alone = {fp32 / median[TUNED]:.2f}x (target >= 0.9x)"
        )
        out.append(f"service fp32 / piq = {fp32 / median[PIQ]:.2f}x (target >= 2x)")
    flags = native_bf16(cpu_flags())
    if (bf16 := median.get("service bf16 (HTTP)")) is not None:
        ratio = f"service bf16 / plain bare fp32 = {bf16 / median[PLAIN]:.2f}x"
        if torch.cuda.is_available():
            out.append(ratio)
        else:
            target = "6x with AMX" if "amx_bf16" in flags else "1.5x with AVX512-BF16 only"
            out.append(f"{ratio} (target >= {target})")
    else:
        out.append("service bf16: not measurable here (refused: no AMX or AVX512-BF16)")
    return out


# -- engine ------------------------------------------------------------------------------------


def engine_split(
    extractor: VGGFeatures,
    device: torch.device,
    sides: Sequence[int],
    batches: Sequence[int],
    rounds: int,
) -> str:
    """``Scorer.score`` against the forward pass alone on the same uploaded rows, interleaved;
    the difference is what the engine adds to the forward pass (mostly the metrics)."""
    runner = ModelRunner(extractor, device=device)
    scorer = Scorer(runner)
    rows = []
    for side in sides:
        for n in batches:
            pairs = distinct_pairs(side, n)
            with torch.inference_mode():
                images = runner.upload([p.reference for p in pairs], [p.candidate for p in pairs])
            times = interleaved(
                {
                    "bare": partial(runner.forward, images),
                    "engine": partial(scorer.score, pairs),
                },
                rounds=2 * rounds,
                device=device,
            )
            other = max(times["engine"] - times["bare"], 0.0)
            rows.append(
                [
                    f"{side}",
                    f"{n}",
                    f"{n / times['bare']:.2f}",
                    f"{n / times['engine']:.2f}",
                    f"{times['bare'] / times['engine']:.3f}",
                    f"{times['bare'] * 1000:.0f}",
                    f"{other * 1000:.0f}",
                    f"{100 * other / times['bare']:.1f} %",
                ]
            )
            print(" ".join(rows[-1]), file=sys.stderr)
    return table(
        [
            "px",
            "batch",
            "bare pairs/s",
            "engine pairs/s",
            "engine/bare",
            "forward ms",
            "rest ms",
            "rest/forward",
        ],
        rows,
    )


# -- compile -----------------------------------------------------------------------------------


def compiled_forward(
    extractor: VGGFeatures, device: torch.device, side: int, pairs: int, rounds: int
) -> str:
    """Eager against compiled forward passes of ``2 * pairs`` images, interleaved."""
    images = torch.rand(2 * pairs, 3, side, side, device=device)
    rows = []
    for precision in fast_precisions(device):
        started = time.monotonic()
        compiled = ModelRunner(extractor, device=device, precision=precision, compile_model=True)
        compiled.warm_up([(side, side)], pairs)
        compile_s = time.monotonic() - started
        eager = ModelRunner(extractor, device=device, precision=precision)
        runs: dict[str, Callable[[], object]] = {
            "eager": partial(eager.forward, images),
            "compiled": partial(compiled.forward, images),
        }
        times = interleaved(runs, rounds=2 * rounds, device=device)
        rows.append(
            [
                precision,
                f"{pairs / times['eager']:.2f}",
                f"{pairs / times['compiled']:.2f}",
                f"{times['eager'] / times['compiled']:.2f}x",
                f"{compile_s:.0f}",
            ]
        )
        print(" ".join(rows[-1]), file=sys.stderr)
    return table(
        ["precision", "eager pairs/s", "compiled pairs/s", "speed-up", "warm-up + compile s"],
        rows,
    )


def startup(args: argparse.Namespace, out: Path) -> str:
    """Launch to ready of ``simscore serve`` compiling the warm shape: cold, then warm cache."""
    rows = []
    device = torch.device(args.device)
    with tempfile.TemporaryDirectory(prefix="simscore-inductor-") as cache:
        for precision in fast_precisions(device):
            for label in ("cold cache", "warm cache"):
                env = service_env(
                    device=args.device,
                    precision=precision,
                    compile="on",
                    compile_cache_dir=f"{cache}/{precision}",
                    max_batch_size=args.pairs,
                    warmup_sides=args.side,
                )
                with serving(env, out / f"startup-{precision}.log") as (_, ready_s):
                    pass
                rows.append([precision, label, f"{ready_s:.1f}"])
                print(" ".join(rows[-1]), file=sys.stderr)
            env = service_env(
                device=args.device, precision=precision, compile="off", warmup_sides=args.side
            )
            with serving(env, out / f"startup-{precision}.log") as (_, ready_s):
                pass
            rows.append([precision, "compile off", f"{ready_s:.1f}"])
    return table(["precision", "inductor cache", "launch to ready s"], rows)


# -- ssim --------------------------------------------------------------------------------------


def ssim_table(sides: Sequence[int], repeats: int) -> str:
    import numpy as np
    import pytorch_msssim
    from skimage.metrics import structural_similarity

    from app.scores import ssim

    rows = []
    for side in sides:
        (pair,) = distinct_pairs(side, 1)
        x, y = pair.reference[None], pair.candidate[None]
        xn = pair.reference.permute(1, 2, 0).numpy().astype(np.float64)
        yn = pair.candidate.permute(1, 2, 0).numpy().astype(np.float64)
        options = {"gaussian_weights": True, "sigma": 1.5, "use_sample_covariance": False}
        ours = median_seconds(partial(ssim, x, y), repeats=repeats)
        theirs = median_seconds(
            partial(pytorch_msssim.ssim, x, y, data_range=1.0, size_average=False),
            repeats=repeats,
        )
        sk = median_seconds(
            partial(structural_similarity, xn, yn, channel_axis=2, data_range=1, **options),
            repeats=repeats,
        )
        rows.append(
            [
                f"{side}",
                f"{ours * 1000:.1f}",
                f"{theirs * 1000:.1f}",
                f"{sk * 1000:.1f}",
                f"{ours / theirs:.2f}",
                f"{ours / sk:.2f}",
            ]
        )
    return table(
        ["px", "ours ms", "pytorch_msssim ms", "scikit-image ms", "ours/msssim", "ours/skimage"],
        rows,
    )


# -- main --------------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    parser.add_argument("--quick", action="store_true", help="small sizes, one round")
    parser.add_argument(
        "--sections", default=None, help=f"of {','.join(SECTIONS)} (default all; --quick: {QUICK})"
    )
    parser.add_argument("--side", type=int, default=224, help="table, compile, start-up")
    parser.add_argument("--pairs", type=int, default=8, help="pairs per batch (table, compile)")
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--batches", type=int, default=3, help="batches per model-alone run")
    parser.add_argument("--http-seconds", type=float, default=30.0)
    parser.add_argument("--sides", type=int, nargs="*", default=[224, 512], help="engine")
    parser.add_argument("--batch-sizes", type=int, nargs="*", default=[1, 4, 8, 16])
    parser.add_argument("--out", type=Path, default=Path("results/engine"))
    args = parser.parse_args(argv)
    if args.quick:
        args.side, args.pairs, args.clients, args.rounds = 64, 4, 8, 1
        args.batches, args.http_seconds = 2, 4.0
        args.sides, args.batch_sizes = [64], [1, 4]
    if args.sections is None:
        args.sections = QUICK if args.quick else ",".join(SECTIONS)
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    device = torch.device(args.device)
    sections = [s for s in args.sections.split(",") if s]
    if unknown := set(sections) - set(SECTIONS):
        raise SystemExit(f"unknown sections {sorted(unknown)}; choose from {SECTIONS}")
    if device.type == "cpu":
        tune_cpu_allocator()  # as the service does (the table's baselines run in own processes)
    features, _ = load_features("random", seed=0)
    extractor = VGGFeatures(features)
    print(header("simscore engine benchmark", device))
    results = Results(args.out, "engine", {"argv": sys.argv, "load_average": load_average()})
    report: dict[str, Callable[[], Any]] = {
        "table": lambda: service_table(args, args.out),
        "engine": lambda: engine_split(
            extractor, device, args.sides, args.batch_sizes, args.rounds
        ),
        "compile": lambda: compiled_forward(extractor, device, args.side, args.pairs, args.rounds),
        "startup": lambda: startup(args, args.out),
        "ssim": lambda: ssim_table([64, 128] if args.quick else [512, 1024], 3 * args.rounds),
        "rss": lambda: f"Peak RSS of this process: {peak_rss_mb():.0f} MB",
    }
    for section in sections:
        started = time.monotonic()
        value = report[section]()
        text, data = value if isinstance(value, tuple) else (value, value)
        took = time.monotonic() - started
        print(f"## {section} ({took:.0f} s, load average {load_average()})\n\n{text}\n", flush=True)
        results.add(section, data)
    return 0


if __name__ == "__main__":
    sys.exit(main())
