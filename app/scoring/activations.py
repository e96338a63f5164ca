"""How many image pixels one forward pass may take: the activation budget
(``SIMSCORE_MAX_BATCH_PIXELS``).

A batch's memory grows with the pixels its forward pass takes (rows x height x width), not with
its pair count: VGG19's first taps alone are 64 channels at full size. Measured peak of a batch,
per pixel of its rows (``bench/activations.py``; AMD EPYC, 2 cores, AVX512-BF16, torch 2.14.1,
2026-12-07; docs/security.md): fp32 805 to 931 bytes (4 and 2 rows of 512 px), bf16 701 to 759
(the forward pass alone 476 to 490 in bf16: the scores read the taps in fp32). The figures
below are the largest of each.

Default: on the CPU ``CPU_BATCH_PIXELS``, two images of 1024x1024 (one pair at the default
``SIMSCORE_MAX_SIDE``, under 2 GiB in fp32); on CUDA, ``CUDA_MEMORY_FRACTION`` of the device's
memory over the precision's bytes per pixel (the CPU's figures: not measured on a GPU).
"""

from __future__ import annotations

import torch

from app.vocabulary import Precision

BYTES_PER_PIXEL: dict[Precision, int] = {"fp32": 931, "bf16": 759, "fp16": 759}
CPU_BATCH_PIXELS = 2 * 1024 * 1024
CUDA_MEMORY_FRACTION = 0.5


def batch_pixels(setting: int | None, device: torch.device, precision: Precision) -> int:
    """``SIMSCORE_MAX_BATCH_PIXELS`` if set, else the default for the device (module
    docstring)."""
    if setting is not None:
        return setting
    if device.type != "cuda":
        return CPU_BATCH_PIXELS
    memory = torch.cuda.get_device_properties(device).total_memory
    return max(CPU_BATCH_PIXELS, int(memory * CUDA_MEMORY_FRACTION) // BYTES_PER_PIXEL[precision])
