"""A ready-to-use ``Scorer`` from ``Settings``: device checks, weights (VGG19 required, the
optional backbones when found), runner, learned heads on the device, reference cache.

Shared by the server's lifespan, ``simscore compare`` (through the same pipeline) and the
benchmarks.
"""

from __future__ import annotations

import logging
import os
from typing import Protocol

import torch

from app.config import Settings
from app.cpus import available_cpus
from app.models.vgg import VGGFeatures
from app.models.weights import load_features
from app.scoring.backbones import load_optional_backbones
from app.scoring.device import (
    check_precision,
    configure_cuda,
    cpu_flags,
    cpu_model,
    native_bf16,
    resolve_device,
    tune_cpu_allocator,
)
from app.scoring.network_scores import load_heads
from app.scoring.references import CacheObserver, ReferenceCache
from app.scoring.runner import ModelRunner
from app.scoring.scorer import Scorer
from app.scoring.taps import TimingObserver
from app.scoring.types import BackboneWeights, ModelInfo

log = logging.getLogger(__name__)


class ScorerObserver(CacheObserver, TimingObserver, Protocol):
    """What the scorer reports: the reference cache and the time of each score and network."""


def build_scorer(
    settings: Settings, observer: ScorerObserver | None = None
) -> tuple[Scorer, ModelInfo]:
    """Check the device can run the precision, load the weights once, place the networks and
    their heads.

    Raises ``StartupError`` or ``WeightsError`` with a message that says what to change.
    """
    device = resolve_device(settings.device)
    flags = cpu_flags()
    check_precision(settings.precision, device, flags)
    if device.type == "cuda":
        configure_cuda(cudnn_benchmark=settings.cudnn_benchmark)
    size_threads(settings)
    if device.type == "cpu" and settings.cpu_allocator_tuning:
        tune_cpu_allocator()
    features, weights = load_features(
        settings.weights, seed=settings.random_seed, expected_sha256=settings.weights_sha256
    )
    optional = load_optional_backbones(settings)
    runner = ModelRunner(
        VGGFeatures(features),
        networks=optional.networks,
        device=device,
        precision=settings.precision,
        tf32=settings.tf32_enabled and device.type == "cuda",
        channels_last=settings.channels_last,
        compile_model=settings.compile_enabled,
        compile_cache_dir=settings.compile_cache_dir,
        overlap=settings.overlap_batches,
    )
    if settings.compile_enabled and not settings.warmup_shapes:
        log.warning(
            "SIMSCORE_COMPILE is on but SIMSCORE_WARMUP_SIDES is empty: nothing is compiled "
            "(shapes are compiled at warm-up only, so that no request waits for a compile)"
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
        backbones={
            name: BackboneWeights(loaded.source, loaded.short_sha256)
            for name, loaded in optional.weights.items()
        },
    )
    _log_loaded(info, settings, _describe(device, flags))
    heads = load_heads(runner.networks, runner.device)
    scorer = Scorer(runner, cache, heads=heads, unavailable=optional.unavailable, observer=observer)
    return scorer, info


def _log_loaded(info: ModelInfo, settings: Settings, hardware: str) -> None:
    log.info(
        "model loaded: vgg19 weights=%s sha256=%s device=%s (%s) precision=%s compile=%s tf32=%s",
        info.weights,
        info.sha256,
        info.device,
        hardware,
        info.precision,
        f"on, warm shapes {settings.warmup_sides}" if settings.compile_enabled else "off",
        settings.tf32_enabled if info.device.startswith("cuda") else "n/a",
    )


def size_threads(settings: Settings) -> None:
    """torch's intra-op threads and inductor's compile workers, sized to the CPUs this process
    may use (affinity and cgroup quota: ``app.cpus``), not the host's cores. Explicit settings
    win: ``SIMSCORE_TORCH_THREADS``, ``TORCHINDUCTOR_COMPILE_THREADS``."""
    cpus = available_cpus()
    if settings.torch_threads:
        torch.set_num_threads(settings.torch_threads)
    elif torch.get_num_threads() > cpus:
        torch.set_num_threads(cpus)
    if settings.compile_enabled and "TORCHINDUCTOR_COMPILE_THREADS" not in os.environ:
        import torch._inductor.config as inductor_config

        inductor_config.compile_threads = min(inductor_config.compile_threads or cpus, cpus)
    log.info("CPUs this process may use: %d; torch threads: %d", cpus, torch.get_num_threads())


def _describe(device: torch.device, flags: frozenset[str]) -> str:
    """The hardware behind the device, for the start-up log line."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    units = native_bf16(flags)
    return f"{cpu_model()}, bf16 units: {', '.join(units) if units else 'none'}"
