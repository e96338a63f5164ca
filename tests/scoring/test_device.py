"""What the scorer knows of its device: resolution (a missing cuda:N named at start-up), bf16
support of the CPU, CUDA settings (IEEE fp32 process-wide, TF32 scoped), out-of-memory and sticky
failure recognition, memory figures and the factory's precision, compile and thread policy."""

from __future__ import annotations

import platform
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import torch

import app.scoring.factory as factory
from app.config import Settings
from app.errors import StartupError
from app.scoring import ModelRunner
from app.scoring.device import (
    MemoryStats,
    check_precision,
    configure_cuda,
    cpu_flags,
    cpu_model,
    fp32_math,
    is_device_failure,
    is_out_of_memory,
    memory_stats,
    native_bf16,
    resolve_device,
    tf32_enabled,
    tune_cpu_allocator,
)

CPU = torch.device("cpu")
CUDA = torch.device("cuda")
ZEN3 = frozenset({"fpu", "sse2", "avx2", "fma"})  # this development machine: no bf16 units
SAPPHIRE_RAPIDS = ZEN3 | {"avx512f", "avx512_bf16", "amx_bf16", "amx_tile"}
COOPER_LAKE = ZEN3 | {"avx512f", "avx512_bf16"}


def test_auto_is_the_cpu_without_cuda(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_device("auto") == CPU
    assert resolve_device("cpu") == CPU


def test_cuda_without_cuda_refuses_to_start(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(StartupError, match="CUDA is not available"):
        resolve_device("cuda:0")


@pytest.fixture
def two_gpus(monkeypatch: pytest.MonkeyPatch) -> None:
    """A machine with two CUDA devices, as torch would describe it."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda index=0: f"NVIDIA H100 #{index}")


@pytest.mark.usefixtures("two_gpus")
def test_a_cuda_device_that_is_not_there_stops_start_up_naming_those_that_are() -> None:
    with pytest.raises(StartupError) as caught:
        resolve_device("cuda:2")
    message = str(caught.value)
    assert "\n" not in message
    assert "SIMSCORE_DEVICE='cuda:2'" in message and "2 CUDA devices" in message
    assert "cuda:0 (NVIDIA H100 #0), cuda:1 (NVIDIA H100 #1)" in message
    assert resolve_device("cuda:1") == torch.device("cuda", 1)
    assert resolve_device("cuda") == torch.device("cuda")


@pytest.mark.usefixtures("two_gpus")
def test_a_missing_cuda_device_stops_the_factory_before_the_weights_load(
    make_settings: Callable[..., Settings], monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_weights(*args: object, **kwargs: object) -> None:
        raise AssertionError("the weights were loaded for a device that is not there")

    monkeypatch.setattr(factory, "load_features", no_weights)
    with pytest.raises(StartupError, match=r"cuda:7.*cuda:0 \(NVIDIA H100 #0\)"):
        factory.build_scorer(make_settings(device="cuda:7"))


def test_a_device_name_that_is_no_device_is_a_start_up_error() -> None:
    with pytest.raises(StartupError, match="not a device: use auto, cpu, cuda or cuda:N"):
        resolve_device("gpu0")


def test_cpu_flags_and_model_from_cpuinfo(tmp_path: Path) -> None:
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text(
        "processor\t: 0\nmodel name\t: Intel(R) Xeon(R) Platinum 8480+\n"
        "flags\t\t: fpu avx2 avx512f avx512_bf16 amx_bf16 amx_tile\n\nprocessor\t: 1\n"
    )
    flags = cpu_flags(cpuinfo)
    assert {"avx512_bf16", "amx_bf16"} <= flags
    assert native_bf16(flags) == ["amx_bf16", "avx512_bf16"]
    assert cpu_model(cpuinfo) == "Intel(R) Xeon(R) Platinum 8480+"
    missing = tmp_path / "absent"
    assert cpu_flags(missing) == frozenset()
    assert cpu_model(missing) == "unknown CPU"


def test_this_machines_flags_are_read() -> None:
    """Whatever the CPU: x86 Linux lists its flags, and bf16 support is read from them."""
    flags = cpu_flags()
    if not flags:
        pytest.skip("no readable /proc/cpuinfo flags here")
    assert native_bf16(flags) == [f for f in ("amx_bf16", "avx512_bf16") if f in flags]


@pytest.mark.parametrize("flags", [SAPPHIRE_RAPIDS, COOPER_LAKE], ids=["amx", "avx512_bf16"])
def test_bf16_runs_on_cpus_with_bf16_units(flags: frozenset[str]) -> None:
    check_precision("bf16", CPU, flags)


def test_bf16_refused_on_cpus_without_bf16_units() -> None:
    with pytest.raises(StartupError, match="AMX or AVX512-BF16") as caught:
        check_precision("bf16", CPU, ZEN3)
    assert "SIMSCORE_PRECISION=fp32" in str(caught.value)


def test_fp16_needs_cuda_and_fp32_runs_anywhere() -> None:
    with pytest.raises(StartupError, match="fp16 needs CUDA"):
        check_precision("fp16", CPU, SAPPHIRE_RAPIDS)
    for flags in (ZEN3, frozenset()):
        check_precision("fp32", CPU, flags)
    for precision in ("fp32", "bf16", "fp16"):
        check_precision(precision, CUDA, frozenset())


CUDNN_CONV: Any = torch.backends.cudnn.conv  # type: ignore[attr-defined]  # torch >= 2.9


@pytest.fixture
def cuda_flags() -> Iterator[None]:
    """Restore the process-wide CUDA math settings after a test changes them."""
    conv, matmul = CUDNN_CONV.fp32_precision, torch.backends.cuda.matmul.fp32_precision
    benchmark = torch.backends.cudnn.benchmark
    yield
    CUDNN_CONV.fp32_precision = conv
    torch.backends.cuda.matmul.fp32_precision = matmul
    torch.backends.cudnn.benchmark = benchmark


@pytest.mark.usefixtures("cuda_flags")
def test_configure_cuda_sets_ieee_fp32_and_cudnn_autotuning() -> None:
    """PyTorch allows TF32 in cuDNN by default: the process-wide setting turns it off."""
    CUDNN_CONV.fp32_precision = "tf32"
    torch.backends.cuda.matmul.fp32_precision = "tf32"
    configure_cuda(cudnn_benchmark=True)
    assert CUDNN_CONV.fp32_precision == "ieee"
    assert torch.backends.cuda.matmul.fp32_precision == "ieee"
    assert tf32_enabled() == (False, False)
    assert torch.backends.cudnn.benchmark is True
    configure_cuda(cudnn_benchmark=False)
    assert torch.backends.cudnn.benchmark is False


@pytest.mark.usefixtures("cuda_flags")
def test_fp32_math_sets_tf32_inside_the_block_only() -> None:
    configure_cuda(cudnn_benchmark=False)
    with fp32_math(tf32=True):
        assert tf32_enabled() == (True, True)
        with fp32_math(tf32=False):
            assert tf32_enabled() == (False, False)
        assert tf32_enabled() == (True, True)
    assert tf32_enabled() == (False, False)
    CUDNN_CONV.fp32_precision = "tf32"  # whoever set it: a metric's block is IEEE regardless
    with fp32_math(tf32=False):
        assert tf32_enabled() == (False, False)
    assert tf32_enabled() == (True, False)
    with pytest.raises(ValueError, match="inside"), fp32_math(tf32=True):
        raise ValueError("inside")
    assert tf32_enabled() == (True, False)


# Real messages, as torch, the CUDA runtime, cuBLAS, cuDNN and the CPU allocator word them.
OUT_OF_MEMORY = [
    "CUDA out of memory. Tried to allocate 2.00 GiB (GPU 0; 79.15 GiB total capacity; 75.02 GiB "
    "already allocated; 1.12 GiB free; 76.50 GiB reserved in total by PyTorch)",
    "CUDA error: out of memory\nCUDA kernel errors might be asynchronously reported at some other "
    "API call, so the stacktrace below might be incorrect.",
    "CUDA driver error: out of memory",
    "CUDA error: CUBLAS_STATUS_ALLOC_FAILED when calling `cublasCreate(handle)`",
    "cuDNN error: CUDNN_STATUS_ALLOC_FAILED",
    "cuDNN error: CUDNN_STATUS_NOT_ENOUGH_WORKSPACE",
    "[enforce fail at alloc_cpu.cpp:127] err == 0. DefaultCPUAllocator: can't allocate memory: "
    "you tried to allocate 4503599627370496 bytes. Error code 12 (Cannot allocate memory)",
    "[enforce fail at alloc_cpu.cpp:83] data. DefaultCPUAllocator: not enough memory: you tried "
    "to allocate 68719476736 bytes.",
]
NOT_OUT_OF_MEMORY = [
    "CUDA error: an illegal memory access was encountered",
    "CUDA error: device-side assert triggered",
    "cuDNN error: CUDNN_STATUS_EXECUTION_FAILED",
    "CUDA error: CUBLAS_STATUS_EXECUTION_FAILED when calling `cublasSgemm( handle, opa, opb, m, n,"
    " k, &alpha, a, lda, b, ldb, &beta, c, ldc)`",
    "Expected all tensors to be on the same device, but found at least two devices, cuda:0 and "
    "cpu!",
    "Given groups=1, weight of size [64, 3, 3, 3], expected input[1, 4, 224, 224] to have 3 "
    "channels, but got 4 channels instead",
]


TORCH_HINT = (
    "\nCUDA kernel errors might be asynchronously reported at some other API call, so the "
    "stacktrace below might be incorrect.\nFor debugging consider passing CUDA_LAUNCH_BLOCKING=1"
    "\nCompile with `TORCH_USE_CUDA_DSA` to enable device-side assertions.\n"
)
# Sticky errors (the CUDA context is lost), as torch, the runtime, Triton and CuPy word them.
DEVICE_FAILURES = [
    "CUDA error: an illegal memory access was encountered" + TORCH_HINT,
    "CUDA error: device-side assert triggered" + TORCH_HINT,
    "CUDA error: unspecified launch failure" + TORCH_HINT,
    "CUDA error: uncorrectable ECC error encountered" + TORCH_HINT,
    "CUDA error: an illegal instruction was encountered" + TORCH_HINT,
    "CUDA error: misaligned address" + TORCH_HINT,
    "CUDA error: the launch timed out and was terminated" + TORCH_HINT,
    "CUDA error: hardware stack error" + TORCH_HINT,
    "CUDA error: uncorrectable NVLink error detected during the execution" + TORCH_HINT,
    "CUDA driver error: an illegal memory access was encountered",
    "Triton Error [CUDA]: an illegal memory access was encountered",
    "Triton Error [CUDA]: unspecified launch failure",
    "cudaErrorIllegalAddress: an illegal memory access was encountered",
    "cudaErrorLaunchFailure: unspecified launch failure",
]
NOT_DEVICE_FAILURES = [
    *OUT_OF_MEMORY,
    "cuDNN error: CUDNN_STATUS_EXECUTION_FAILED",
    "Expected all tensors to be on the same device, but found at least two devices, cuda:0 and "
    "cpu!",
    "Given groups=1, weight of size [64, 3, 3, 3], expected input[1, 4, 224, 224] to have 3 "
    "channels, but got 4 channels instead",
]


@pytest.mark.parametrize("message", DEVICE_FAILURES)
def test_sticky_device_errors_are_recognised(message: str) -> None:
    assert is_device_failure(RuntimeError(message))
    assert is_device_failure(torch.AcceleratorError(message))
    assert not is_out_of_memory(RuntimeError(message))
    assert not is_device_failure(ValueError(message))  # only runtime errors count


@pytest.mark.parametrize("message", NOT_DEVICE_FAILURES)
def test_other_errors_are_not_device_failures(message: str) -> None:
    assert not is_device_failure(RuntimeError(message))
    assert not is_device_failure(torch.OutOfMemoryError(message))


@pytest.mark.parametrize("message", OUT_OF_MEMORY)
def test_out_of_memory_messages_are_recognised(message: str) -> None:
    assert is_out_of_memory(RuntimeError(message))
    assert is_out_of_memory(torch.AcceleratorError(message))


@pytest.mark.parametrize("message", NOT_OUT_OF_MEMORY)
def test_other_device_errors_are_not_out_of_memory(message: str) -> None:
    assert not is_out_of_memory(RuntimeError(message))
    assert not is_out_of_memory(ValueError("out of memory"))  # only runtime errors count


def test_torchs_out_of_memory_error_and_a_real_cpu_failure() -> None:
    assert is_out_of_memory(torch.OutOfMemoryError("anything"))
    with pytest.raises(RuntimeError) as caught:
        torch.empty(2**62, dtype=torch.uint8)
    assert is_out_of_memory(caught.value)


def test_memory_stats_are_zero_on_the_cpu() -> None:
    assert memory_stats(CPU) == MemoryStats(0, 0, 0)


def test_allocator_tuning_applies_with_glibc() -> None:
    # what the tuning does is tested in tests/test_allocator.py
    assert tune_cpu_allocator() is (platform.libc_ver()[0] == "glibc")


# -- memory gauges stay current when a batch fails -----------------------------------------


@pytest.mark.parametrize("overlap", [True, False])
def test_overlap_batches_setting_reaches_the_runner(
    make_settings: Callable[..., Settings], monkeypatch: pytest.MonkeyPatch, overlap: bool
) -> None:
    seen: dict[str, Any] = {}
    real = ModelRunner

    def spy(*args: Any, **kwargs: Any) -> Any:
        seen.update(kwargs)
        return real(*args, **kwargs)

    monkeypatch.setattr(factory, "ModelRunner", spy)
    factory.build_scorer(make_settings(overlap_batches=overlap))
    assert seen["overlap"] is overlap
    assert make_settings().overlap_batches is False  # off until measured on a GPU


# -- the factory's policy --------------------------------------------------------------------


def test_bf16_is_refused_at_build_on_a_cpu_without_bf16_units(
    make_settings: Callable[..., Settings], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(factory, "cpu_flags", lambda: ZEN3)
    with pytest.raises(StartupError, match="AMX or AVX512-BF16"):
        factory.build_scorer(make_settings(precision="bf16"))


@pytest.mark.parametrize(
    ("overrides", "compiling"),
    [
        ({"precision": "bf16"}, True),  # the fast path is the default with bf16 alone
        ({"precision": "bf16", "compile": "off"}, False),
        ({}, False),  # fp32 default: eager
        ({"compile": "on"}, True),
    ],
)
def test_factory_compile_policy(
    make_settings: Callable[..., Settings],
    monkeypatch: pytest.MonkeyPatch,
    overrides: dict[str, str],
    compiling: bool,
) -> None:
    monkeypatch.setattr(factory, "cpu_flags", lambda: SAPPHIRE_RAPIDS)
    scorer, info = factory.build_scorer(make_settings(**overrides))
    assert scorer.runner.compiling is compiling
    assert scorer.runner.precision == overrides.get("precision", "fp32")
    assert info.precision == scorer.runner.precision
    assert scorer.runner.compiled_shapes == frozenset()  # nothing traced before the warm-up
