"""Helpers shared by the benchmarks: timing, machine description, real photographs."""

from __future__ import annotations

import os
import platform
import resource
import statistics
import time
from collections.abc import Callable

import numpy as np
import torch
from PIL import Image


def machine() -> str:
    model = platform.processor() or "unknown CPU"
    try:
        with open("/proc/cpuinfo") as handle:
            for line in handle:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    return (
        f"{model}, {os.cpu_count()} cores, torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads, {gpu}"
    )


def best_of(fn: Callable[[], object], *, repeats: int, warmup: int = 1) -> float:
    """Median seconds of ``repeats`` calls after ``warmup`` calls (CUDA synchronised)."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        start = time.perf_counter()
        fn()
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def photo_pair(side: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """A real photograph (scikit-image) and a noisy JPEG-like distortion of it, (3, side, side)."""
    from skimage import data

    names = ("astronaut", "chelsea", "coffee", "rocket")
    image = getattr(data, names[seed % len(names)])()
    image = np.asarray(Image.fromarray(image).resize((side, side), Image.Resampling.LANCZOS))
    rng = np.random.default_rng(seed)
    noisy = np.clip(image.astype(np.float64) + rng.normal(0, 10, image.shape), 0, 255)
    ref = torch.from_numpy(np.array(image)).permute(2, 0, 1).float().div(255).contiguous()
    cand = torch.from_numpy(noisy.astype(np.float32)).permute(2, 0, 1).div(255).contiguous()
    return ref, cand


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def table(headers: list[str], rows: list[list[str]]) -> str:
    """A Markdown table."""
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(headers)]
    line = "| " + " | ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)) + " |"
    rule = "|" + "|".join("-" * (w + 2) for w in widths) + "|"
    body = [
        "| " + " | ".join(c.rjust(w) for c, w in zip(r, widths, strict=True)) + " |" for r in rows
    ]
    return "\n".join([line, rule, *body])
