"""Build a ready-to-use ``Scorer`` from ``Settings``: device, weights, cache, CPU tuning.

Shared by the server's lifespan, ``simscore compare`` and the benchmarks.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging

import torch

from app.config import Settings
from app.models.vgg import VGGFeatures
from app.models.weights import load_features
from app.observability import Metrics
from app.reference_cache import ReferenceCache
from app.scoring import ModelInfo, Scorer

log = logging.getLogger(__name__)

# glibc mallopt parameters (malloc.h)
_M_TRIM_THRESHOLD = -1
_M_MMAP_MAX = -4


def resolve_device(name: str) -> torch.device:
    """'auto' is the first CUDA device when there is one, else the CPU."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(f"SIMSCORE_DEVICE={name!r} but CUDA is not available here")
    return device


def tune_cpu_allocator() -> bool:
    """Keep freed memory for reuse instead of unmapping it (glibc only).

    VGG activations are tens of MB each; by default glibc serves them with fresh ``mmap``
    pages that are zero-filled on first touch and returned at ``free``, for every batch.
    Turning mmap off and never trimming lets the heap reuse those pages (see
    docs/benchmarks.md for the measured effect). Returns whether it applied.
    """
    name = ctypes.util.find_library("c")
    if not name:
        return False
    try:
        libc = ctypes.CDLL(name)
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    ok = bool(mallopt(_M_MMAP_MAX, 0)) and bool(mallopt(_M_TRIM_THRESHOLD, 2**30))
    return ok


def build_scorer(settings: Settings, metrics: Metrics | None = None) -> tuple[Scorer, ModelInfo]:
    """Load weights once, place the extractor on its device, attach the reference cache."""
    device = resolve_device(settings.device)
    if settings.torch_threads:
        torch.set_num_threads(settings.torch_threads)
    if device.type == "cpu" and settings.cpu_allocator_tuning:
        tune_cpu_allocator()
    features, weights = load_features(
        settings.weights, seed=settings.random_seed, expected_sha256=settings.weights_sha256
    )
    cache = ReferenceCache(
        settings.reference_cache_size, settings.reference_cache_max_bytes, metrics
    )
    scorer = Scorer(
        VGGFeatures(features),
        device=device,
        precision=settings.precision,
        channels_last=settings.channels_last,
        cache=cache,
    )
    info = ModelInfo(
        name="vgg19",
        weights=weights.source,
        sha256=weights.short_sha256,
        device=str(device),
        precision=scorer.precision,
    )
    log.info(
        "model ready: vgg19 weights=%s sha256=%s device=%s precision=%s",
        info.weights,
        info.sha256,
        info.device,
        info.precision,
    )
    return scorer, info
