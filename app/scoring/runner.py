"""The model beside its device: VGG19's taps for a batch of images, fast and on the right device.

``ModelRunner`` owns the device policy (precision and autocast, memory layout, compiled kernels,
TF32 and cuDNN settings), the warm-up, and the host-to-device path: a batch's references and
candidates are written once into one host buffer (pinned and reused on CUDA) and copied to the
device in one transfer.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

import torch

from app.models.vgg import VGGFeatures
from app.scoring.device import MemoryStats, memory_stats
from app.vocabulary import Precision

log = logging.getLogger(__name__)

AUTOCAST_DTYPES = {"fp16": torch.float16, "bf16": torch.bfloat16}
Shape = tuple[int, int]  # (height, width)


class ModelRunner:
    """Runs one VGG19 extractor on one device (see the module docstring)."""

    def __init__(
        self,
        extractor: VGGFeatures,
        *,
        device: torch.device,
        precision: Precision = "fp32",
        channels_last: bool = True,
        compile_model: bool = False,
        compile_cache_dir: Path | None = None,
    ) -> None:
        self.device = device
        self.precision: Precision = precision
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format
        self.extractor = extractor.to(device).to(memory_format=self.memory_format).eval()
        self._compiled: Callable[[torch.Tensor], list[torch.Tensor]] | None = None
        self._compiled_shapes: set[Shape] = set()
        if compile_model:
            self._compiled = _compile(self.extractor, device, compile_cache_dir)
        self._pinned: torch.Tensor | None = None
        self._copied: torch.cuda.Event | None = None

    @property
    def compiled_shapes(self) -> frozenset[Shape]:
        """Image shapes whose forward runs compiled kernels (all others run eagerly)."""
        return frozenset(self._compiled_shapes)

    def upload(
        self, references: Sequence[torch.Tensor], candidates: Sequence[torch.Tensor]
    ) -> torch.Tensor:
        """``(R + C, 3, H, W)`` on the device: the references, then the candidates.

        One host copy into a buffer in the forward's memory layout (pinned and reused on CUDA),
        then one transfer to the device.
        """
        images = [*references, *candidates]
        shape = (len(images), *images[0].shape)
        host = self._host_buffer(shape)
        for row, image in enumerate(images):
            host[row].copy_(image)
        if self.device.type != "cuda":
            return host
        on_device = host.to(self.device, non_blocking=True)
        self._copied = torch.cuda.Event()  # type: ignore[no-untyped-call]
        self._copied.record()
        return on_device

    def forward(self, images: torch.Tensor) -> list[torch.Tensor]:
        """The five taps of ``images`` ``(N, 3, H, W)`` in [0, 1], compiled where warmed up."""
        images = images.contiguous(memory_format=self.memory_format)
        shape = (int(images.shape[2]), int(images.shape[3]))
        module = self._compiled if shape in self._compiled_shapes else None
        with self._autocast():
            if module is None:
                return list(self.extractor(images))
            torch._dynamo.mark_dynamic(images, 0)
            return list(module(images))

    def warm_up(self, shapes: Iterable[Shape], batch_size: int) -> None:
        """Run every row count a batch of ``shape`` can bring (1 to ``2 * batch_size``: uncached
        references plus candidates) once per shape: the allocator and cuDNN settle, and with
        compilation on, the shape's kernels are compiled (eager until then)."""
        generator = torch.Generator().manual_seed(0)
        with torch.inference_mode():
            for height, width in shapes:
                images = torch.rand(2 * batch_size, 3, height, width, generator=generator)
                images = images.to(self.device)
                self.forward(images)
                if self._compiled is not None:
                    self._compile_shape(images)
                if self.device.type == "cuda":
                    for rows in range(1, 2 * batch_size + 1):
                        self.forward(images[:rows])
        self.synchronize()

    def synchronize(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def memory(self) -> MemoryStats:
        """Allocated, reserved and peak device memory (peak since the last call)."""
        return memory_stats(self.device)

    def release_memory(self) -> None:
        """After an out-of-memory error: hand cached blocks back to the device."""
        if self.device.type == "cuda":
            torch.cuda.empty_cache()

    def _compile_shape(self, images: torch.Tensor) -> None:
        shape = (int(images.shape[2]), int(images.shape[3]))
        self._compiled_shapes.add(shape)
        try:
            for rows in sorted({1, 2, images.shape[0]}):
                self.forward(images[:rows])
        except Exception:
            self._compiled_shapes.discard(shape)
            log.exception("compiling the extractor for %s failed; that shape runs eagerly", shape)

    def _autocast(self) -> contextlib.AbstractContextManager[object]:
        if self.precision == "fp32":
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=AUTOCAST_DTYPES[self.precision])

    def _host_buffer(self, shape: tuple[int, ...]) -> torch.Tensor:
        if self.device.type != "cuda":
            return torch.empty(shape).contiguous(memory_format=self.memory_format)
        numel = 1
        for size in shape:
            numel *= size
        if self._copied is not None:
            self._copied.synchronize()  # the last batch's copy has left the buffer
        if self._pinned is None or self._pinned.numel() < numel:
            self._pinned = torch.empty(numel, pin_memory=True)
        strides = torch.empty(shape, device="meta").contiguous(memory_format=self.memory_format)
        return self._pinned[:numel].as_strided(shape, strides.stride())


def _compile(
    extractor: VGGFeatures, device: torch.device, cache_dir: Path | None
) -> Callable[[torch.Tensor], list[torch.Tensor]]:
    """``torch.compile`` (inductor) with frozen weights; kernels cached in ``cache_dir``."""
    if cache_dir is not None:
        cache_dir.mkdir(parents=True, exist_ok=True)
        os.environ["TORCHINDUCTOR_CACHE_DIR"] = str(cache_dir)
    import torch._inductor.config as inductor_config

    inductor_config.freezing = True  # weights become constants: folded and pre-packed
    log.info("compiling the extractor on %s (cache: %s)", device, cache_dir or "inductor's default")
    compiled: Callable[[torch.Tensor], list[torch.Tensor]] = torch.compile(
        extractor, backend="inductor"
    )
    return compiled
