"""Small constant tensors (tap weights, filter taps) on a device, made once per device and dtype.

Made per batch from host values they would be copied from pageable memory, and on CUDA such a
copy waits for everything already queued on the stream: the host would stall behind the batch
before (the one a next batch is meant to overlap). Callers must not modify them in place."""

from __future__ import annotations

import functools

import torch


@functools.cache  # a few entries per device; never evicted (a stream may still read one)
def constant(values: tuple[float, ...], dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """``values`` as a 1-D tensor on ``device`` (a normal tensor, also inside inference mode)."""
    with torch.inference_mode(False):
        return torch.tensor(values, dtype=dtype, device=device)
