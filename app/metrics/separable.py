"""Separable filtering as banded matrix products, and the fp32 guard around it.

A 1-D filter of ``k`` taps applied along the rows of an ``(L, M)`` matrix ("valid": no
padding, ``L - k + 1`` output rows) is a banded matrix ``T`` times the matrix. Cut into blocks
of ``b`` output rows, each block is one small dense product

    out[r0 : r0 + b] = T_b @ x[r0 : r0 + b + k - 1],      T_b[i, i : i + k] = taps

with ``T_b`` of shape ``(b, b + k - 1)``: ``(b + k - 1) / k`` times the multiply-adds of a
direct convolution, but run by the BLAS at its full speed. PyTorch's depthwise ``conv2d`` on a
CPU is several times slower for these 19- to 41-tap kernels (docs/benchmarks.md). All blocks go
to one batched product over an overlapping strided view of ``x`` (no copy). The zeros of
``T_b`` add exact zeros, so each output is the ``k``-tap dot product, summed in the BLAS's order.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch

BLOCK_ROWS = 16  # output rows per block: the fastest of 8 to 64 on the CPU measured
_ALIGN = 16  # floats: 64 bytes


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
    """Valid filtering down the rows: ``([P,] L, M) -> ([P,] L - k + 1, M)``, ``band`` from
    ``band_matrix`` (``k`` taps), each of the ``P`` planes on its own. ``x`` and ``out``
    (written if given) must be contiguous within a plane (any stride between planes)."""
    if x.dim() == 2:
        return filter_rows(x[None], band, out=None if out is None else out[None])[0]
    block, width = band.shape
    k = width - block + 1
    planes, length, columns = x.shape
    rows = _output_length(length, k)
    out = aligned_planes(planes, rows, columns, x) if out is None else out
    full, rest = divmod(rows, block)
    for plane in range(planes):
        source, target = x[plane], out[plane]
        if full:
            windows = source.as_strided((full, width, columns), (block * columns, columns, 1))
            blocks = target.as_strided((full, block, columns), (block * columns, columns, 1))
            torch.bmm(band.expand(full, block, width), windows, out=blocks)
        if rest:
            done = full * block
            torch.mm(band[:rest, : rest + k - 1], source[done:], out=target[done:])
    return out


def filter_columns(
    x: torch.Tensor, band: torch.Tensor, *, out: torch.Tensor | None = None
) -> torch.Tensor:
    """Valid filtering along each row: ``([P,] M, L) -> ([P,] M, L - k + 1)``, the blocks as
    ``x[..., c : c + b + k - 1] @ T_b^T``. ``x`` and ``out`` need unit stride along a row
    (any other strides)."""
    if x.dim() == 2:
        return filter_columns(x[None], band, out=None if out is None else out[None])[0]
    block, width = band.shape
    k = width - block + 1
    planes, count, length = x.shape
    columns = _output_length(length, k)
    out = aligned_planes(planes, count, columns, x) if out is None else out
    full, rest = divmod(columns, block)
    for plane in range(planes):
        source, target = x[plane], out[plane]
        if full:
            windows = source.as_strided((full, count, width), (block, source.stride(0), 1))
            blocks = target.as_strided((full, count, block), (block, target.stride(0), 1))
            torch.bmm(windows, band.t().expand(full, width, block), out=blocks)
        if rest:
            done = full * block
            torch.mm(source[:, done:], band[:rest, : rest + k - 1].t(), out=target[:, done:])
    return out


def filter_planes(x: torch.Tensor, band: torch.Tensor) -> torch.Tensor:
    """The same ``k``-tap filter along both axes, valid: ``(P, H, W) -> (P, H - k + 1,
    W - k + 1)`` (along each row, then down the columns). Equal planes give equal results, bit
    for bit, when ``x``'s planes are ``aligned_planes``."""
    return filter_rows(filter_columns(x, band), band)


def aligned_planes(planes: int, rows: int, columns: int, like: torch.Tensor) -> torch.Tensor:
    """An empty ``(planes, rows, columns)`` tensor whose planes start 64 bytes apart times an
    integer: the BLAS takes another path for a differently aligned operand, which moves the last
    bit, so equal planes would not give equal results without it."""
    stride = -(-rows * columns // _ALIGN) * _ALIGN
    return like.new_empty(planes, stride)[:, : rows * columns].view(planes, rows, columns)


def _output_length(length: int, k: int) -> int:
    if length < k:
        raise ValueError(f"need at least {k} samples to filter with {k} taps, got {length}")
    return length - k + 1


@contextlib.contextmanager
def fp32_math(device: torch.device) -> Iterator[None]:
    """IEEE float32 products inside: no autocast (the service's bf16/fp16 modes) and, on CUDA,
    no TF32 in matrix products or convolutions (the service may enable it for the VGG)."""
    with torch.autocast(device_type=device.type, enabled=False):
        if device.type != "cuda":
            yield
            return
        matmul, cudnn = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False
        try:
            yield
        finally:
            torch.backends.cuda.matmul.allow_tf32 = matmul
            torch.backends.cudnn.allow_tf32 = cudnn
