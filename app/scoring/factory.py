"""A ready-to-use ``Scorer`` from ``Settings``: device checks, weights, runner, reference cache.

Shared by the server's lifespan, ``simscore compare`` (through the same pipeline) and the
benchmarks.
"""

from __future__ import annotations

import logging

import torch

from app.config import Settings
from app.models.vgg import VGGFeatures
from app.models.weights import load_features
from app.scoring.device import (
    check_precision,
    configure_cuda,
    cpu_flags,
    resolve_device,
    tune_cpu_allocator,
)
from app.scoring.references import CacheObserver, ReferenceCache
from app.scoring.runner import ModelRunner
from app.scoring.scorer import Scorer
from app.scoring.types import ModelInfo

log = logging.getLogger(__name__)


def build_scorer(
    settings: Settings, observer: CacheObserver | None = None
) -> tuple[Scorer, ModelInfo]:
    """Check the device can run the precision, load the weights once, place the model.

    Raises ``StartupError`` or ``WeightsError`` with a message that says what to change.
    """
    device = resolve_device(settings.device)
    check_precision(settings.precision, device, cpu_flags())
    if device.type == "cuda":
        configure_cuda(tf32=settings.tf32_enabled, cudnn_benchmark=settings.cudnn_benchmark)
    if settings.torch_threads:
        torch.set_num_threads(settings.torch_threads)
    if device.type == "cpu" and settings.cpu_allocator_tuning:
        tune_cpu_allocator()
    features, weights = load_features(
        settings.weights, seed=settings.random_seed, expected_sha256=settings.weights_sha256
    )
    runner = ModelRunner(
        VGGFeatures(features),
        device=device,
        precision=settings.precision,
        channels_last=settings.channels_last,
        compile_model=settings.compile_enabled,
        compile_cache_dir=settings.compile_cache_dir,
    )
    cache = ReferenceCache(
        settings.reference_cache_size, settings.reference_cache_max_bytes, observer
    )
    info = ModelInfo(
        name="vgg19",
        weights=weights.source,
        sha256=weights.short_sha256,
        device=str(device),
        precision=settings.precision,
    )
    log.info(
        "model loaded: vgg19 weights=%s sha256=%s device=%s precision=%s compile=%s tf32=%s",
        info.weights,
        info.sha256,
        info.device,
        info.precision,
        settings.compile_enabled,
        settings.tf32_enabled if device.type == "cuda" else "n/a",
    )
    return Scorer(runner, cache), info
