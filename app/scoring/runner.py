"""The model beside its device: VGG19's taps for a batch of images, fast and on the right device.

``ModelRunner`` owns the device policy (precision and autocast, memory layout, compiled kernels),
the warm-up, and the transfers: a batch's references and candidates are written once into one
host buffer in the forward's memory layout (pinned and reused on CUDA) and copied to the device in
one transfer; its scores come back in one transfer too (``download``).

Overlap (``overlap=True``, CUDA): two pinned buffers used in turn, and the copy to the device on
a stream of its own that the compute stream waits for. The host can then fill the next batch's
buffer and start its copy while the current batch computes (``app.batching`` starts a full next
batch before collecting the current one).

Compiled kernels (``compile_model``): ``torch.compile`` (inductor, frozen weights) traces only
during the warm-up, for each warmed image shape and every row count a batch of that shape can
bring (1 to ``2 * max_batch_size``), with the batch axis dynamic so that row counts share graphs.
A shape that was not warmed up runs the eager module, never the compiled one: no request waits
for a compile. Graphs keep height and width static (kernels specialised per shape).
TF32 (``tf32=True``) applies in a scope around the forward pass only (``device.fp32_math``).
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import torch

from app.models.vgg import VGGFeatures
from app.scoring.device import MemoryStats, fp32_math, memory_stats
from app.vocabulary import Precision

log = logging.getLogger(__name__)

AUTOCAST_DTYPES = {"fp16": torch.float16, "bf16": torch.bfloat16}
COMPILE_BACKEND: str | Callable[..., Any] = "inductor"  # tests swap in a counting backend
BLOCKING_EVENTS = True  # event waits sleep, not spin a core (bench/gpu.py's worker_cpu: both)
Shape = tuple[int, int]  # (height, width)
Taps = Callable[[torch.Tensor], list[torch.Tensor]]


class CopyDone(Protocol):
    """Marks when an asynchronous copy is done with its source (a CUDA event)."""

    def record(self) -> None: ...

    def synchronize(self) -> None: ...


class CopyStream(Protocol):
    """A stream for host-to-device copies beside the compute stream (CUDA)."""

    def __enter__(self) -> object: ...

    def __exit__(self, *exc: object) -> None: ...

    def hand_over(self, tensor: torch.Tensor) -> None:
        """Make the compute stream wait for the copies so far, and mark ``tensor`` (copied
        here) as used there, so that its memory is not reused before the compute is done."""


class _CudaCopyStream:
    def __init__(self, device: torch.device) -> None:
        self._stream = torch.cuda.Stream(device)  # type: ignore[no-untyped-call]
        self._using = torch.cuda.stream(self._stream)

    def __enter__(self) -> object:
        return self._using.__enter__()  # type: ignore[no-untyped-call]

    def __exit__(self, *exc: object) -> None:
        self._using.__exit__(*exc)

    def hand_over(self, tensor: torch.Tensor) -> None:
        compute = torch.cuda.current_stream(tensor.device)
        compute.wait_stream(self._stream)
        tensor.record_stream(compute)


def pinned_empty(numel: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """A flat host buffer in page-locked memory (what makes a copy asynchronous)."""
    return torch.empty(numel, dtype=dtype, device="cpu", pin_memory=True)


class _CudaCopyDone:
    """A CUDA event recorded on ``device``'s current stream (not the current device's: the
    batch worker never sets its thread's device, so on ``cuda:1`` that would be GPU 0's). Its
    wait sleeps (``blocking``) rather than spinning a core."""

    def __init__(self, device: torch.device) -> None:
        self._device = device
        self._event = torch.cuda.Event(blocking=BLOCKING_EVENTS)  # type: ignore[no-untyped-call]

    def record(self) -> None:
        self._event.record(torch.cuda.current_stream(self._device))

    def synchronize(self) -> None:
        self._event.synchronize()


def copy_event(device: torch.device) -> CopyDone:
    return _CudaCopyDone(device)


def copy_stream(device: torch.device) -> CopyStream:
    return _CudaCopyStream(device)


@dataclass
class _HostSlot:
    """A reused pinned host buffer and the event of the last copy that read it."""

    buffer: torch.Tensor | None = None
    copied: CopyDone | None = None


class ModelRunner:
    """Runs one VGG19 extractor on one device (see the module docstring)."""

    def __init__(
        self,
        extractor: VGGFeatures,
        *,
        device: torch.device,
        precision: Precision = "fp32",
        tf32: bool = False,
        channels_last: bool = True,
        compile_model: bool = False,
        compile_cache_dir: Path | None = None,
        overlap: bool = False,
        pin_memory: bool | None = None,
    ) -> None:
        self.device = device
        self.precision: Precision = precision
        self.tf32 = tf32  # the backbone's fp32 convolutions and matmuls in TF32 (CUDA)
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format
        self.extractor = extractor.to(device).to(memory_format=self.memory_format).eval()
        # Pinned host buffers and asynchronous copies: on CUDA unless told (tests pin for meta).
        self.pin_memory = device.type == "cuda" if pin_memory is None else pin_memory
        self._compiled: Taps | None = None
        self._compiled_shapes: set[Shape] = set()
        if compile_model:
            self._compiled = _compile(self.extractor, device, compile_cache_dir)
        self.overlap = overlap and self.pin_memory
        self._slots = [_HostSlot() for _ in range(2 if self.overlap else 1)]
        self._turn = 0
        self._copies: CopyStream | None = copy_stream(device) if self.overlap else None

    @property
    def host_buffers(self) -> list[torch.Tensor]:
        """The pinned host buffers uploads reuse (one, two with overlap; none before the first
        upload, and none off CUDA)."""
        return [slot.buffer for slot in self._slots if slot.buffer is not None]

    @property
    def compiling(self) -> bool:
        """Whether warmed-up shapes get compiled kernels."""
        return self._compiled is not None

    @property
    def compiled_shapes(self) -> frozenset[Shape]:
        """Image shapes whose forward runs compiled kernels (all others run eagerly)."""
        return frozenset(self._compiled_shapes)

    def upload(
        self, references: Sequence[torch.Tensor], candidates: Sequence[torch.Tensor]
    ) -> torch.Tensor:
        """``(R + C, 3, H, W)`` on the device: the references, then the candidates.

        One host copy into a buffer in the forward's memory layout (pinned and reused on CUDA),
        then one transfer to the device (none on the CPU), on the copy stream with overlap.
        """
        images = [*references, *candidates]
        host, slot = self._host_buffer((len(images), *images[0].shape))
        for row, image in enumerate(images):
            host[row].copy_(image)
        if self.device.type == "cpu":
            return host
        with self._copies or contextlib.nullcontext():
            on_device = host.to(self.device, non_blocking=self.pin_memory)
            if slot is not None:
                slot.copied = copy_event(self.device)
                slot.copied.record()
        if self._copies is not None:
            self._copies.hand_over(on_device)
        return on_device

    def download(self, values: torch.Tensor) -> Callable[[], torch.Tensor]:
        """Start copying ``values`` to the host; returns what waits for the copy and gives the
        host tensor. On CUDA the copy goes into pinned memory without blocking: the host waits
        only when the values are asked for."""
        if values.device.type == "cpu":
            return lambda: values
        if not self.pin_memory:
            host = values.cpu()
            return lambda: host
        pinned = pinned_empty(values.numel(), values.dtype).view(values.shape)
        pinned.copy_(values, non_blocking=True)
        arrived = copy_event(self.device)
        arrived.record()

        def wait() -> torch.Tensor:
            arrived.synchronize()
            return pinned

        return wait

    def forward(self, images: torch.Tensor) -> list[torch.Tensor]:
        """The five taps of ``images`` ``(N, 3, H, W)`` in [0, 1]: compiled kernels for a shape
        warmed up with compilation on, the eager module for any other."""
        shape = (int(images.shape[2]), int(images.shape[3]))
        with torch.inference_mode(), fp32_math(tf32=self.tf32), self._autocast():
            if self._compiled is None or shape not in self._compiled_shapes:
                return list(self.extractor(images.contiguous(memory_format=self.memory_format)))
            # The compiled graphs were traced on inference tensors: give them one (a tensor
            # made outside inference mode would fail the guards and recompile).
            if images.is_inference():
                images = images.contiguous(memory_format=self.memory_format)
            else:
                images = images.clone(memory_format=self.memory_format)
            return self._compiled(_batch_dynamic(images))

    def warm_up(
        self, shapes: Iterable[Shape], batch_size: int, max_pixels: int | None = None
    ) -> None:
        """Run each shape at ``2 * batch_size`` rows (uncached references plus candidates) so
        the allocator and oneDNN/cuDNN settle; fewer where ``max_pixels`` (the activation
        budget) admits fewer pairs of the shape. With compilation on, or on CUDA (where cuDNN
        picks algorithms per input shape), run every row count a batch can bring, from the
        largest down to 1."""
        shapes = list(dict.fromkeys(shapes))
        if self._compiled is not None:
            _allow_graphs(len(shapes) * 2 * batch_size)
        generator = torch.Generator().manual_seed(0)
        with torch.inference_mode():
            for height, width in shapes:
                pairs = batch_size
                if max_pixels is not None:
                    pairs = max(1, min(batch_size, max_pixels // (2 * height * width)))
                rows = 2 * pairs
                images = torch.rand(rows, 3, height, width, generator=generator, device="cpu")
                images = images.to(self.device)
                if self._compiled is not None and self._compile_shape(images):
                    continue  # every row count ran, compiled
                counts = range(rows, 0, -1) if self.device.type == "cuda" else [rows]
                for count in counts:
                    self.forward(images[:count])
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

    def _compile_shape(self, images: torch.Tensor) -> bool:
        """Compile the extractor for ``images``' shape by running every row count up to
        ``images``', from the largest down; whether it worked (if not, the shape stays eager).

        The batch axis is dynamic, so row counts share graphs; dynamo still splits them into a
        few (1 alone; oneDNN picks its convolution by batch size, so 2-15 and 16 up differ):
        running each count here leaves none to compile on the request path."""
        import torch._inductor.config as inductor_config

        shape = (int(images.shape[2]), int(images.shape[3]))
        self._compiled_shapes.add(shape)
        try:
            # Freezing: the weights become constants, folded and pre-packed for oneDNN (set
            # while tracing: torch.compile's `options` do not reach it).
            with inductor_config.patch(freezing=True):
                for count in range(images.shape[0], 0, -1):
                    self.forward(images[:count])
        except Exception:
            self._compiled_shapes.discard(shape)
            log.exception("compiling the extractor for %s failed; that shape runs eagerly", shape)
            return False
        return True

    def _autocast(self) -> contextlib.AbstractContextManager[object]:
        if self.precision == "fp32":
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=AUTOCAST_DTYPES[self.precision])

    def _host_buffer(self, shape: tuple[int, ...]) -> tuple[torch.Tensor, _HostSlot | None]:
        """A host tensor of ``shape`` in the forward's layout: fresh on the CPU (the device
        itself), otherwise a view of the next pinned buffer (once its last copy has read it)."""
        strides = torch.empty(shape, device="meta").contiguous(memory_format=self.memory_format)
        if not self.pin_memory:
            return torch.empty_strided(shape, strides.stride(), device="cpu"), None
        numel = strides.numel()
        slot = self._slots[self._turn]
        self._turn = (self._turn + 1) % len(self._slots)
        if slot.copied is not None:
            slot.copied.synchronize()
        if slot.buffer is None or slot.buffer.numel() < numel:
            slot.buffer = None  # free the smaller buffer before pinning a larger one
            slot.buffer = pinned_empty(numel)
        return slot.buffer[:numel].as_strided(shape, strides.stride()), slot


def _batch_dynamic(images: torch.Tensor) -> torch.Tensor:
    """Mark the batch axis dynamic and height and width static for the compiled module."""
    torch._dynamo.mark_dynamic(images, 0)
    torch._dynamo.mark_static(images, 2)
    torch._dynamo.mark_static(images, 3)
    return images


def _allow_graphs(graphs: int) -> None:
    """Let dynamo keep up to ``graphs`` graphs of the extractor (its default limit is 8 per
    function; past it, calls fall back to eager with a warning)."""
    import torch._dynamo.config as dynamo_config

    dynamo_config.recompile_limit = max(dynamo_config.recompile_limit, graphs)


def _compile(extractor: VGGFeatures, device: torch.device, cache_dir: Path | None) -> Taps:
    """``torch.compile`` (inductor), kernels cached in ``cache_dir``. Nothing is traced until
    the first call (``ModelRunner._compile_shape``)."""
    if cache_dir is not None:
        cache_dir.mkdir(parents=True, exist_ok=True)
        os.environ["TORCHINDUCTOR_CACHE_DIR"] = str(cache_dir)
        os.environ.setdefault("TRITON_CACHE_DIR", str(cache_dir / "triton"))
    log.info("compiling the extractor on %s (cache: %s)", device, cache_dir or "inductor's default")
    module: Callable[[torch.Tensor], Sequence[torch.Tensor]] = torch.compile(
        extractor, backend=COMPILE_BACKEND
    )

    def taps(images: torch.Tensor) -> list[torch.Tensor]:
        return list(module(images))

    return taps
