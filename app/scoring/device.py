"""What the scorer needs to know about its device: which one, what it can do, how it fails.

Device resolution, bf16 support of the CPU, the CUDA math settings (IEEE fp32 process-wide, TF32
only in a scope around the backbone, cuDNN autotuning), recognition of out-of-memory errors and of
sticky device failures, memory figures and the glibc allocator setting for the CPU.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator, Sequence
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
# Errors after which the CUDA context is unusable until the process exits ("sticky"): every later
# call fails too. The runtime's wording, its enum names and the driver's (Triton reports those).
# (tests/scoring/test_device.py holds the real messages each pattern is for.)
DEVICE_FAILURE_MESSAGES = re.compile(
    r"illegal memory access|illegal address|illegal instruction|misaligned address|"
    r"device-side assert|unspecified launch failure|launch timed out|"
    r"uncorrectable ECC error|ECC_UNCORRECTABLE|ECCUncorrectable|uncorrectable NVLink|"
    r"NVLINK_UNCORRECTABLE|NvlinkUncorrectable|hardware stack error|HARDWARE_STACK_ERROR|"
    r"invalid program counter|INVALID_PC|not supported on global/shared address space|"
    r"GPU has fallen off the bus|cudaErrorIllegalAddress|cudaErrorLaunchFailure|"
    r"CUDA_ERROR_LAUNCH_FAILED|cudaErrorAssert|CUDA_ERROR_ASSERT|cudaErrorLaunchTimeout|"
    r"CUDA_ERROR_LAUNCH_TIMEOUT|cudaErrorIllegalInstruction|cudaErrorMisalignedAddress",
    re.IGNORECASE,
)


def resolve_device(name: str) -> torch.device:
    """'auto' is the first CUDA device when there is one, else the CPU. A CUDA device that is not
    there stops start-up with one line naming the devices that are."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError as exc:
        raise StartupError(
            f"SIMSCORE_DEVICE={name!r} is not a device: use auto, cpu, cuda or cuda:N"
        ) from exc
    if device.type == "cuda" and not torch.cuda.is_available():
        raise StartupError(
            f"SIMSCORE_DEVICE={name!r} but CUDA is not available here (no GPU, or a driver "
            f"older than this torch build's CUDA {torch.version.cuda}); see docs/deploy.md"
        )
    if device.type == "cuda" and device.index is not None:
        count = torch.cuda.device_count()
        if device.index >= count:
            raise StartupError(
                f"SIMSCORE_DEVICE={name!r} but this machine has {count} CUDA "
                f"device{'' if count == 1 else 's'}: {cuda_devices(count)}"
            )
    return device


def cuda_devices(count: int) -> str:
    """``cuda:0 (name), cuda:1 (name), ...`` for the first ``count`` CUDA devices."""
    names = []
    for index in range(count):
        try:
            names.append(f"cuda:{index} ({torch.cuda.get_device_name(index)})")
        except (RuntimeError, AssertionError):
            names.append(f"cuda:{index}")
    return ", ".join(names) or "none"


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


def configure_cuda(*, cudnn_benchmark: bool) -> None:
    """The process-wide CUDA math: IEEE fp32 convolutions and matmuls (TF32 off; PyTorch's own
    default allows TF32 in cuDNN's), and cuDNN autotuning. TF32, when asked for, applies only
    inside ``fp32_math(tf32=True)`` around the backbone (``ModelRunner.forward``)."""
    set_tf32(False)
    torch.backends.cudnn.benchmark = cudnn_benchmark


def tf32_enabled() -> tuple[bool, bool]:
    """Whether fp32 (cuDNN convolutions, CUDA matmuls) may run in TF32 right now."""
    if hasattr(torch.backends.cudnn, "conv"):
        conv = torch.backends.cudnn.conv.fp32_precision == "tf32"
        return conv, torch.backends.cuda.matmul.fp32_precision == "tf32"
    return bool(torch.backends.cudnn.allow_tf32), bool(torch.backends.cuda.matmul.allow_tf32)


def set_tf32(enabled: bool, matmul: bool | None = None) -> None:
    """Allow TF32 (or IEEE fp32) for cuDNN convolutions and, unless ``matmul`` says otherwise,
    CUDA matmuls. Process-wide flags, read when a kernel is launched."""
    matmul = enabled if matmul is None else matmul
    if hasattr(torch.backends.cudnn, "conv"):
        torch.backends.cudnn.conv.fp32_precision = "tf32" if enabled else "ieee"
        torch.backends.cuda.matmul.fp32_precision = "tf32" if matmul else "ieee"
    else:  # torch < 2.9
        torch.backends.cudnn.allow_tf32 = enabled
        torch.backends.cuda.matmul.allow_tf32 = matmul


@contextlib.contextmanager
def fp32_math(*, tf32: bool) -> Iterator[None]:
    """fp32 convolutions and matmuls launched inside the block run in TF32 (``tf32``) or IEEE
    fp32; the flags before it are restored after. The batch worker is the one thread that runs
    CUDA math: the backbone's forward runs in this scope with ``tf32`` as asked, the scores in
    it with ``tf32=False``, so a metric never sees TF32 whoever set the flags before."""
    before = tf32_enabled()
    set_tf32(tf32)
    try:
        yield
    finally:
        set_tf32(*before)


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


def is_device_failure(exc: BaseException) -> bool:
    """True for a sticky CUDA error (an illegal address, a device-side assert, an ECC error, a
    failed launch...): the process's CUDA context is lost, and only a new process recovers."""
    if isinstance(exc, torch.OutOfMemoryError) or not isinstance(exc, RuntimeError):
        return False
    return bool(DEVICE_FAILURE_MESSAGES.search(str(exc)))


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
