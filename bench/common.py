"""Helpers shared by the benchmarks: the machine, timing, tables, pairs, results on disk.

Photographs and distortions come from ``devtools.images`` (one copy for tests and
benchmarks); servers from ``devtools.servers``.
"""

from __future__ import annotations

import json
import os
import platform
import resource
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # `python bench/x.py` without installing the project
    sys.path.insert(0, str(ROOT))

from app.scoring.device import CPU_BF16_FLAGS, cpu_flags, cpu_model  # noqa: E402
from app.scoring.types import PairRequest  # noqa: E402
from devtools.images import photo_pair  # noqa: E402

# CPU flags that decide which kernels run (oneDNN picks by these).
SHOWN_FLAGS = ("avx2", "avx512f", "avx512_vnni", *CPU_BF16_FLAGS, "amx_tile")


def load_average() -> str:
    one, five, _ = os.getloadavg()
    return f"{one:.1f} (5 min {five:.1f})"


def machine(device: torch.device | None = None) -> str:
    """One line: CPU model, cores, the flags that matter, torch, threads, GPU, load average."""
    flags = cpu_flags()
    shown = " ".join(f for f in SHOWN_FLAGS if f in flags) or "none of " + " ".join(SHOWN_FLAGS)
    gpu = "no GPU"
    if torch.cuda.is_available():
        gpu = torch.cuda.get_device_name(device if device and device.type == "cuda" else 0)
    return (
        f"{cpu_model()} ({platform.machine()}), {os.cpu_count()} cores, flags: {shown}; "
        f"torch {torch.__version__}, {torch.get_num_threads()} threads; {gpu}; "
        f"load average {load_average()}"
    )


def header(title: str, device: torch.device | None = None) -> str:
    return (
        f"# {title}\n\n{' '.join(sys.argv)}\n\nMachine: {machine(device)}\n\n"
        f"Date: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}\n"
    )


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def median_seconds(
    fn: Callable[[], object], *, repeats: int, warmup: int = 1, device: torch.device | None = None
) -> float:
    """Median seconds of ``repeats`` calls after ``warmup`` calls (synchronised on CUDA)."""
    dev = device or torch.device("cpu")
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        sync(dev)
        start = time.perf_counter()
        fn()
        sync(dev)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def interleaved(
    contenders: dict[str, Callable[[], object]], *, rounds: int, device: torch.device | None = None
) -> dict[str, float]:
    """Median seconds per call of each contender, calls alternating in a rotating order so that
    load from elsewhere on a shared machine lands on all of them alike (one untimed call each
    first)."""
    dev = device or torch.device("cpu")
    names = list(contenders)
    for name in names:
        contenders[name]()
    times: dict[str, list[float]] = {name: [] for name in names}
    for k in range(rounds):
        for name in names[k % len(names) :] + names[: k % len(names)]:
            sync(dev)
            start = time.perf_counter()
            contenders[name]()
            sync(dev)
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(values) for name, values in times.items()}


def distinct_pairs(side: int, count: int, first_seed: int = 0) -> list[PairRequest]:
    """``count`` pairs of ``side`` px, each with its own reference (a distinct photo crop)."""
    return [
        PairRequest(*photo_pair(side, seed=first_seed + i), reference_key=None)
        for i in range(count)
    ]


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def table(headers: Sequence[str], rows: Sequence[Sequence[str]], *, text_columns: int = 1) -> str:
    """A Markdown table: the first ``text_columns`` columns left-aligned, the others (numbers)
    right-aligned."""
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(headers)]
    line = "| " + " | ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)) + " |"
    rule = "|" + "|".join("-" * (w + 2) for w in widths) + "|"
    body = [
        "| "
        + " | ".join(
            c.ljust(w) if i < text_columns else c.rjust(w)
            for i, (c, w) in enumerate(zip(r, widths, strict=True))
        )
        + " |"
        for r in rows
    ]
    return "\n".join([line, rule, *body])


class Results:
    """Sections' results, rewritten to ``<out>/<name>.json`` after every section, so a run cut
    short keeps what it measured."""

    def __init__(self, out: Path | None, name: str, info: dict[str, Any]) -> None:
        self.path = out / f"{name}.json" if out is not None else None
        self.data: dict[str, Any] = {"info": info, "sections": {}}
        self._save()

    def add(self, section: str, value: Any) -> None:
        self.data["sections"][section] = value
        self._save()

    def _save(self) -> None:
        if self.path is not None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.path.write_text(json.dumps(self.data, indent=2, default=str))
