"""What the scorer needs to know about its device: which one, what it can do, how it fails.

Device resolution, bf16 support of the CPU, the CUDA math settings (TF32, cuDNN autotuning),
out-of-memory recognition, memory figures and the glibc allocator setting for the CPU.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from app import allocator
from app.errors import StartupError
from app.vocabulary import Precision

CPU_BF16_FLAGS = ("amx_bf16", "avx512_bf16")  # /proc/cpuinfo flags of native bf16 units
# Allocation failures a smaller batch may avoid, as torch, cuBLAS and cuDNN word them.
# (tests/scoring/test_device.py holds the real messages each pattern is for.)
OUT_OF_MEMORY_MESSAGES = re.compile(
    r"out of memory|CUBLAS_STATUS_ALLOC_FAILED|CUDNN_STATUS_ALLOC_FAILED|"
    r"CUDNN_STATUS_NOT_ENOUGH_WORKSPACE|can't allocate memory|not enough memory|"
    r"failed to allocate",
    re.IGNORECASE,
)


def resolve_device(name: str) -> torch.device:
    """'auto' is the first CUDA device when there is one, else the CPU."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise StartupError(
            f"SIMSCORE_DEVICE={name!r} but CUDA is not available here (no GPU, or a driver "
            f"older than this torch build's CUDA {torch.version.cuda}); see docs/deploy.md"
        )
    return device


def cpu_flags(cpuinfo: Path = Path("/proc/cpuinfo")) -> frozenset[str]:
    """The CPU's feature flags (empty where /proc/cpuinfo cannot be read)."""
    try:
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("flags"):
                return frozenset(line.split(":", 1)[1].split())
    except OSError:
        pass
    return frozenset()


def cpu_model(cpuinfo: Path = Path("/proc/cpuinfo")) -> str:
    """The CPU's model name ("unknown CPU" where /proc/cpuinfo cannot be read)."""
    try:
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown CPU"


def native_bf16(flags: frozenset[str]) -> list[str]:
    """The CPU's native bf16 units among ``CPU_BF16_FLAGS`` (empty: bf16 would be emulated)."""
    return [flag for flag in CPU_BF16_FLAGS if flag in flags]


def check_precision(precision: Precision, device: torch.device, flags: frozenset[str]) -> None:
    """Refuse a precision the device cannot run natively (emulated bf16 is slower than fp32)."""
    if precision == "fp32" or device.type == "cuda":
        return
    if precision == "fp16":
        raise StartupError("SIMSCORE_PRECISION=fp16 needs CUDA; on a CPU use fp32 or bf16")
    if not native_bf16(flags):
        raise StartupError(
            "SIMSCORE_PRECISION=bf16 needs a CPU with AMX or AVX512-BF16 (Intel Sapphire "
            "Rapids or later, AMD Zen 4 or later); this CPU has neither, and emulated bf16 is "
            "slower than fp32. Use SIMSCORE_PRECISION=fp32"
        )


def configure_cuda(*, tf32: bool, cudnn_benchmark: bool) -> None:
    """TF32 for fp32 convolutions and matmuls, and cuDNN autotuning (process-wide)."""
    mode = "tf32" if tf32 else "ieee"
    if hasattr(torch.backends.cudnn, "conv"):
        torch.backends.cudnn.conv.fp32_precision = mode
        torch.backends.cuda.matmul.fp32_precision = mode
    else:  # torch < 2.9
        torch.backends.cudnn.allow_tf32 = tf32
        torch.backends.cuda.matmul.allow_tf32 = tf32
    torch.backends.cudnn.benchmark = cudnn_benchmark


def to_device(host: torch.Tensor, device: torch.device) -> torch.Tensor:
    """A host tensor on ``device`` without making the host wait for the device: on CUDA through
    pinned memory and an asynchronous copy (a copy from pageable memory waits for the stream,
    so the host would stall behind the batch before)."""
    if device.type != "cuda":
        return host.to(device)
    return host.pin_memory().to(device, non_blocking=True)


def index_on(rows: Sequence[int], device: torch.device) -> torch.Tensor:
    """``rows`` as an index tensor on ``device`` (see ``to_device``)."""
    return to_device(torch.tensor(rows, dtype=torch.long, device="cpu"), device)


def is_out_of_memory(exc: BaseException) -> bool:
    """True for a device (or host) allocation failure that a smaller batch may avoid."""
    if isinstance(exc, torch.OutOfMemoryError):
        return True
    return isinstance(exc, RuntimeError) and bool(OUT_OF_MEMORY_MESSAGES.search(str(exc)))


@dataclass(frozen=True)
class MemoryStats:
    """Device memory held by torch, in bytes (zeros on the CPU)."""

    allocated: int = 0
    reserved: int = 0
    peak: int = 0


def memory_stats(device: torch.device, *, reset_peak: bool = True) -> MemoryStats:
    """Allocated, reserved and peak-since-last-call memory of a CUDA device."""
    if device.type != "cuda":
        return MemoryStats()
    stats = MemoryStats(
        allocated=torch.cuda.memory_allocated(device),
        reserved=torch.cuda.memory_reserved(device),
        peak=torch.cuda.max_memory_allocated(device),
    )
    if reset_peak:
        torch.cuda.reset_peak_memory_stats(device)
    return stats


def tune_cpu_allocator() -> bool:
    """The glibc allocator setting for CPU scoring (``app.allocator``): freed memory kept for
    reuse, and one malloc arena. Returns whether it applied. The arena limit binds only threads
    that have not allocated yet, and only fully when no thread arena exists: ``simscore serve``
    and ``simscore compare`` apply it before any thread starts; a later call (here, from the
    factory) still applies the rest."""
    return allocator.tune()
