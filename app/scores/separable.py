"""Separable filtering as banded matrix products, and the fp32 guard around it.

A 1-D filter of ``k`` taps applied along the rows of an ``(L, M)`` matrix ("valid": no
padding, ``L - k + 1`` output rows) is a banded matrix ``T`` times the matrix. Cut into blocks
of ``b`` output rows, each block is one small dense product

    out[r0 : r0 + b] = T_b @ x[r0 : r0 + b + k - 1],      T_b[i, i : i + k] = taps

with ``T_b`` of shape ``(b, b + k - 1)``: ``(b + k - 1) / k`` times the multiply-adds of a
direct convolution, but run by the BLAS at its full speed: PyTorch's depthwise ``conv2d`` on a
CPU is several times slower for these 11- and 21-tap kernels (measured: 165 ms against 26 ms
for FLIP's filters of one 512 px pair, bench/flip_msssim.py's machine). All blocks go to one
batched product over an overlapping strided view of ``x`` (no copy). The zeros of ``T_b`` add
exact zeros, so each output is the ``k``-tap dot product, summed in the BLAS's order.

That order can depend on where an operand lies: in ``filter_rows`` a column's last bit can
change with its offset in the row (the BLAS works through the columns in panels), and in
``filter_columns`` the columns after the last full block take another path. Callers that need
equal inputs to give equal bits (``app.scores.ms_ssim``) keep each plane at an offset that is
a multiple of ``BLOCK_ROWS`` floats and its width a multiple of it.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
from collections.abc import Callable, Iterator
from pathlib import Path

import torch

BLOCK_ROWS = 16  # output rows per block: the fastest of 8 to 64 on the CPU measured


def band_matrix(taps: torch.Tensor, block: int = BLOCK_ROWS) -> torch.Tensor:
    """``(k,)`` taps -> ``(block, block + k - 1)`` with row ``i`` holding the taps from column
    ``i`` (correlation order: ``out[i] = sum_t taps[t] x[i + t]``)."""
    k = taps.numel()
    band = taps.new_zeros(block, block + k - 1)
    for row in range(block):
        band[row, row : row + k] = taps
    return band


def filter_rows(
    x: torch.Tensor, band: torch.Tensor, *, out: torch.Tensor | None = None
) -> torch.Tensor:
    """Valid filtering down the columns: ``(L, M) -> (L - k + 1, M)``, ``band`` from
    ``band_matrix`` (``k`` taps). ``x`` and ``out`` (written if given) must be contiguous."""
    block, width = band.shape
    k = width - block + 1
    length, columns = x.shape
    rows = _output_length(length, k)
    out = x.new_empty(rows, columns) if out is None else out
    full, rest = divmod(rows, block)
    if full:
        windows = x.as_strided((full, width, columns), (block * columns, columns, 1))
        blocks = out.as_strided((full, block, columns), (block * columns, columns, 1))
        torch.bmm(band.expand(full, block, width), windows, out=blocks)
    if rest:
        done = full * block
        torch.mm(band[:rest, : rest + k - 1], x[done:], out=out[done:])
    return out


def filter_columns(
    x: torch.Tensor, band: torch.Tensor, *, out: torch.Tensor | None = None
) -> torch.Tensor:
    """Valid filtering along each row: ``(M, L) -> (M, L - k + 1)``, the blocks as
    ``x[:, c : c + b + k - 1] @ T_b^T``. ``x`` and ``out`` need unit stride along a row (any
    row stride)."""
    block, width = band.shape
    k = width - block + 1
    count, length = x.shape
    columns = _output_length(length, k)
    out = x.new_empty(count, columns) if out is None else out
    full, rest = divmod(columns, block)
    if full:
        windows = x.as_strided((full, count, width), (block, x.stride(0), 1))
        blocks = out.as_strided((full, count, block), (block, out.stride(0), 1))
        torch.bmm(windows, band.t().expand(full, width, block), out=blocks)
    if rest:
        done = full * block
        torch.mm(x[:, done:], band[:rest, : rest + k - 1].t(), out=out[:, done:])
    return out


def _output_length(length: int, k: int) -> int:
    if length < k:
        raise ValueError(f"need at least {k} samples to filter with {k} taps, got {length}")
    return length - k + 1


@contextlib.contextmanager
def fp32_math(device: torch.device) -> Iterator[None]:
    """IEEE float32 products inside: no autocast (the service's bf16/fp16 modes) and, on CUDA,
    no TF32 in matrix products or convolutions (the service may enable it for the VGG)."""
    with contextlib.ExitStack() as stack:
        if torch.amp.is_autocast_available(device.type):
            stack.enter_context(torch.autocast(device_type=device.type, enabled=False))
        if device.type == "cuda":
            stack.callback(_restore_tf32, *_tf32_flags())
            torch.backends.cuda.matmul.allow_tf32 = False
            torch.backends.cudnn.allow_tf32 = False
        yield


def _tf32_flags() -> tuple[bool, bool]:
    return torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32


def _restore_tf32(matmul: bool, cudnn: bool) -> None:
    torch.backends.cuda.matmul.allow_tf32 = matmul
    torch.backends.cudnn.allow_tf32 = cudnn


@contextlib.contextmanager
def one_blas_thread(device: torch.device) -> Iterator[None]:
    """MKL on one thread for this thread's products inside (``MKL_Set_Num_Threads_Local``;
    other threads and PyTorch's own kernels keep theirs). These products are small and many:
    MKL's threads for them stall whenever a core is taken by another process. Measured on the
    shared 2-core AMD EPYC (load average about 8, 4 pairs at 512 px, interleaved): FLIP 666
    against 1,163 ms a pair, MS-SSIM 478 against 773. Nothing changes where MKL is absent or
    on a GPU."""
    setter = _mkl_threads_local() if device.type == "cpu" else None
    if setter is None:
        yield
        return
    previous = setter(1)
    try:
        yield
    finally:
        setter(previous)  # 0: back to the global setting


@functools.cache
def _mkl_threads_local() -> Callable[[int], int] | None:
    """MKL's thread-local thread count setter from the running torch, if it was built with MKL:
    the C entry point ``MKL_Set_Num_Threads_Local(int)`` (what ``mkl.h`` maps
    ``mkl_set_num_threads_local`` to; the lower-case symbol is the Fortran one, by pointer)."""
    for library in (None, str(Path(torch.__file__).parent / "lib" / "libtorch_cpu.so")):
        try:
            setter = ctypes.CDLL(library).MKL_Set_Num_Threads_Local
        except (OSError, AttributeError):
            continue
        setter.argtypes, setter.restype = [ctypes.c_int], ctypes.c_int
        found: Callable[[int], int] = setter
        return found
    return None
