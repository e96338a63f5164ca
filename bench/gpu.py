"""The GPU path, measured in one call of a lent GPU machine: sections in child processes, each
with a deadline of its own (a hung compile or a wedged device costs that section, not the run),
the whole run within ``--budget-s``, and every row in ``--out/gpu.json`` the moment it is measured
(``bench/sections.py``). A Markdown summary goes to stdout and ``--out/gpu.md`` at the end.

    python3 bench/gpu.py --out "$OUT"             # every default section, within 420 s
    python3 bench/gpu.py --quick --out "$OUT"     # the preflight only (about 20 s)

The one-call command that prepares the machine (the wheels of ``bench/gpu_wheels.sh``) and runs
it is in docs/benchmarks.md's GPU section. Sections, in the order they run (``--sections``),
with their deadlines in seconds (``--deadlines name=s,...`` changes them):

* ``preflight`` (60): the card, torch, CUDA and cuDNN versions, the packages found, the CPUs
  this process may use, a forward pass per precision at 64 px.
* ``tests`` (150): ``pytest tests/gpu``, a row per test and the counts and failures.
* ``agreement`` (60): scores on the card against the CPU's fp32 scores of the same real
  photographs and weights: fp32 (TF32 off) held to 1e-5 relative; fp32+tf32, bf16, fp16 measured.
* ``sweep`` (75): ``Scorer.score`` and the bare forward pass, pairs/s by batch size, at each
  side, in fp32, fp32+tf32, bf16 and fp16 (eager), with the peak memory.
* ``http`` (170): the service over HTTP (``simscore serve``), 16 and 64 clients, bf16 compiled
  without and with ``SIMSCORE_OVERLAP_BATCHES``, and fp32.
* ``oom`` (45): a batch too large for a memory cap split in halves until it fits; every pair
  answered with its scores alone.
* ``overlap`` (60): a saturated batch worker with overlap off and on, interleaved, with the
  worker thread's CPU time.
* ``worker_cpu`` (40): the batch worker's CPU time with blocking CUDA events (the service's)
  against spinning ones.
* ``cudnn`` (45): ``cudnn.benchmark`` off and on over aspect-ratio traffic.
* ``compiled`` (120): bf16 with compiled kernels: compile time, then pairs/s by batch size.
* ``table`` (240, not in the default list): ``bench/engine.py``'s table on the device.

Every row records the fp32 math it ran (``tf32``: the backbone in TF32, only in rows named
``fp32+tf32`` or in bf16/fp16 modes; the metrics always IEEE). Weights are the seeded random
VGG19: throughput does not depend on the values. ``--device cpu`` runs the script on a CPU as a
smoke test of the script (no figures to record from it).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # `python3 bench/gpu.py` without installing the project
    sys.path.insert(0, str(ROOT))

from bench.sections import Report, Section, run_sections  # noqa: E402
from devtools.env import child_env, python_path  # noqa: E402

DEADLINES_S = {
    "preflight": 60, "tests": 150, "agreement": 60, "sweep": 75, "http": 170, "oom": 45,
    "overlap": 60, "worker_cpu": 40, "cudnn": 45, "compiled": 120, "table": 240,
}  # fmt: skip
DEFAULT_SECTIONS = [name for name in DEADLINES_S if name != "table"]
BUDGET_S = 420.0  # the whole run: one device call of 480 s leaves a minute for start and copies


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    from bench.gpu_model import modes, positive_ints

    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    add = parser.add_argument
    add("--out", type=Path, default=Path("results/gpu"))
    add("--device", default="cuda", help="cpu: a smoke test of this script")
    add("--quick", action="store_true", help="the preflight only")
    add("--sections", default=",".join(DEFAULT_SECTIONS))
    add("--budget-s", type=float, default=BUDGET_S, help="the whole run, sections skipped past it")
    add("--deadlines", default="", help="name=seconds,... over the defaults")
    add("--sides", type=positive_ints, default=[224, 512])
    add("--batch-sizes", type=positive_ints, default=[1, 4, 8, 16, 32, 64])
    add("--modes", type=modes, default=["fp32", "fp32+tf32", "bf16", "fp16"], help="sweep")
    add("--agreement-side", type=int, default=224)
    add("--overlap-sides", type=positive_ints, default=[224])
    add("--overlap-batch-sizes", type=positive_ints, default=[8, 32])
    add("--overlap-rounds", type=int, default=3)
    add("--overlap-batches-per-run", type=int, default=8)
    add("--oom-side", type=int, default=512)
    add("--oom-pairs", type=int, default=64)
    add("--oom-cap-gib", type=float, default=6.0)
    add("--cudnn-batch", type=int, default=4)
    add("--cudnn-visits", type=int, default=3)
    add("--cudnn-scale", type=float, default=1.0, help="shrink the shapes (smoke tests)")
    add("--http-side", type=int, default=224)
    add("--http-batch", type=int, default=32, help="SIMSCORE_MAX_BATCH_SIZE of the servers")
    add("--http-clients", type=positive_ints, default=[16, 64])
    add("--http-seconds", type=float, default=8.0)
    add("--test-timeout-s", type=float, default=120.0, help="tests: pytest-timeout per test")
    add("--child", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    args.sections = ["preflight"] if args.quick else [s for s in args.sections.split(",") if s]
    unknown = [s for s in args.sections if s not in DEADLINES_S]
    if unknown:
        parser.error(f"unknown sections {unknown}; choose from {list(DEADLINES_S)}")
    return args


def deadlines(text: str) -> dict[str, float]:
    """``DEADLINES_S`` with ``name=seconds`` overrides."""
    chosen: dict[str, float] = dict(DEADLINES_S)
    for item in filter(None, text.split(",")):
        name, _, seconds = item.partition("=")
        chosen[name] = float(seconds)
    return chosen


def section_functions() -> dict[str, Callable[[argparse.Namespace], None]]:
    from bench import gpu_model, gpu_service, gpu_worker

    return {
        "preflight": gpu_model.preflight,
        "tests": gpu_service.gpu_tests,
        "agreement": gpu_model.agreement,
        "sweep": gpu_model.sweep,
        "http": gpu_service.http,
        "oom": gpu_worker.oom,
        "overlap": gpu_worker.overlap,
        "worker_cpu": gpu_worker.worker_cpu,
        "cudnn": gpu_model.cudnn,
        "compiled": gpu_model.compiled,
        "table": gpu_service.table,
    }


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(argv)
    if args.child is not None:
        section_functions()[args.child](args)
        return 0
    limits = deadlines(args.deadlines)
    info = {
        "argv": ["bench/gpu.py", *argv],
        "date_utc": time.strftime("%Y-%m-%d %H:%M", time.gmtime()),
        "budget_s": args.budget_s,
        "deadlines_s": {name: limits[name] for name in args.sections},
    }
    report = Report(args.out / "gpu.json", info)
    command = [sys.executable, str(Path(__file__).resolve()), *argv]
    sections = [Section(n, limits[n], [*command, "--child", n]) for n in args.sections]
    started = time.monotonic()
    run_sections(
        sections,
        report,
        budget_s=args.budget_s,
        env=child_env({"PYTHONPATH": python_path(ROOT), "PYTHONUNBUFFERED": "1"}),
        cwd=ROOT,
        echo=lambda line: print(line, flush=True),
    )
    summary = markdown(report.data)
    (args.out / "gpu.md").write_text(summary)
    print(f"\n{summary}\ntotal {time.monotonic() - started:.0f} s; JSON in {report.path}")
    return 0


def markdown(data: dict[str, Any]) -> str:
    """Each section's status and rows as Markdown tables."""
    parts = [f"# simscore GPU run, {data['info'].get('date_utc', '')} UTC\n"]
    for name, entry in data["sections"].items():
        parts.append(f"## {name}: {entry['status']} ({entry['seconds']:.0f} s)\n")
        rows = entry["rows"]
        if rows:
            columns = list(dict.fromkeys(key for row in rows for key in row))
            parts.append("| " + " | ".join(columns) + " |")
            parts.append("|" + "---|" * len(columns))
            for row in rows:
                parts.append("| " + " | ".join(_cell(row.get(c, "")) for c in columns) + " |")
            parts.append("")
    return "\n".join(parts) + "\n"


def _cell(value: object) -> str:
    if isinstance(value, float):
        return f"{value:.3g}" if abs(value) < 1 else f"{value:.1f}"
    if isinstance(value, dict | list):
        return json.dumps(value, default=str).replace("|", "/")
    return str(value).replace("|", "/").replace("\n", " ")


if __name__ == "__main__":
    sys.exit(main())
