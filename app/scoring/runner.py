"""The networks beside their device: each network's taps for a batch of images, fast and on the
right device.

``ModelRunner`` holds one module per network of the model registry that this server loaded
(VGG19 always; the LPIPS AlexNet, the LPIPS VGG16 and DISTS's VGG16 when their weights were
found), and owns the device policy for all of them (precision and autocast, the memory layout
of each: ``app.scoring.layouts``, compiled kernels), the warm-up, and the transfers: a batch's
references and candidates are written once into one host buffer in VGG19's memory layout
(pinned and reused on CUDA) and copied to the device in one transfer, whatever networks then run
on it (a network in another layout takes a copy); its scores come back in one transfer too
(``download``). Networks that share weights (VGG16's two) share them here too.

Overlap (``overlap=True``, CUDA): two pinned buffers used in turn, and the copy to the device on
a stream of its own that the compute stream waits for. The host can then fill the next batch's
buffer and start its copy while the current batch computes (``app.batching`` starts a full next
batch before collecting the current one).

Compiled kernels (``compile_model``): ``torch.compile`` (inductor, frozen weights) traces only
during the warm-up, for each warmed image shape and every row count a batch of that shape can
bring (1 to ``2 * max_batch_size``), with the batch axis dynamic so that row counts share graphs.
A shape that was not warmed up runs the eager module, never the compiled one: no request waits
for a compile. Graphs keep height and width static (kernels specialised per shape). Each network
is compiled and warmed on its own, for the warm shapes its smallest side allows.
TF32 (``tf32=True``) and autocast apply in a scope around a network's forward pass only
(``device.fp32_math``): whatever runs on the taps afterwards runs in IEEE fp32.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from app.models import registry
from app.models.vgg import VGGFeatures
from app.scoring.compiled import allow_graphs, batch_dynamic, compile_network
from app.scoring.device import MemoryStats, fp32_math, memory_stats
from app.scoring.layouts import memory_formats, place
from app.scoring.transfers import CopyDone, CopyStream, CudaCopyDone, CudaCopyStream, HostSlot
from app.vocabulary import Precision

log = logging.getLogger(__name__)

AUTOCAST_DTYPES = {"fp16": torch.float16, "bf16": torch.bfloat16}
COMPILE_BACKEND: str | Callable[..., Any] = "inductor"  # tests swap in a counting backend
BLOCKING_EVENTS = True  # event waits sleep, not spin a core (bench/gpu.py's worker_cpu: both)
Shape = tuple[int, int]  # (height, width)
Taps = Callable[[torch.Tensor], list[torch.Tensor]]
VGG19 = "vgg19"  # the registry's name of VGG19's network: every runner has it


def pinned_empty(numel: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """A flat host buffer in page-locked memory (what makes a copy asynchronous)."""
    return torch.empty(numel, dtype=dtype, device="cpu", pin_memory=True)


def copy_event(device: torch.device) -> CopyDone:
    return CudaCopyDone(device, blocking=BLOCKING_EVENTS)


def copy_stream(device: torch.device) -> CopyStream:
    return CudaCopyStream(device)


class ModelRunner:
    """Runs the networks of this server on one device (see the module docstring)."""

    def __init__(
        self,
        extractor: VGGFeatures,
        *,
        device: torch.device,
        networks: Mapping[str, nn.Module] | None = None,
        precision: Precision = "fp32",
        tf32: bool = False,
        channels_last: bool = True,
        compile_model: bool = False,
        compile_cache_dir: Path | None = None,
        overlap: bool = False,
        pin_memory: bool | None = None,
    ) -> None:
        """``extractor``: VGG19's network; ``networks``: the others, by registry name."""
        self.device = device
        self.precision: Precision = precision
        self.tf32 = tf32  # the backbones' fp32 convolutions and matmuls in TF32 (CUDA)
        given = {VGG19: extractor, **(networks or {})}
        self.formats = memory_formats(given, device, channels_last)  # app.scoring.layouts
        self.memory_format = self.formats[VGG19]  # the upload's layout
        self.networks: dict[str, nn.Module] = place(given, self.formats, device)
        self.extractor = self.networks[VGG19]
        # Pinned host buffers and asynchronous copies: on CUDA unless told (tests pin for meta).
        self.pin_memory = device.type == "cuda" if pin_memory is None else pin_memory
        self._compiled: dict[str, Taps] = {}
        self._compiled_shapes: dict[str, set[Shape]] = {name: set() for name in self.networks}
        if compile_model:
            for name, module in self.networks.items():
                self._compiled[name] = compile_network(
                    name, module, device, compile_cache_dir, COMPILE_BACKEND
                )
        self.overlap = overlap and self.pin_memory
        self._slots = [HostSlot() for _ in range(2 if self.overlap else 1)]
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
        return bool(self._compiled)

    @property
    def compiled_shapes(self) -> frozenset[Shape]:
        """Image shapes whose VGG19 forward runs compiled kernels (all others run eagerly)."""
        return self.compiled_shapes_of(VGG19)

    def compiled_shapes_of(self, network: str) -> frozenset[Shape]:
        """Image shapes whose forward through ``network`` runs compiled kernels."""
        return frozenset(self._compiled_shapes[network])

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

    def forward(self, images: torch.Tensor, network: str = VGG19) -> list[torch.Tensor]:
        """The taps of ``images`` ``(N, 3, H, W)`` in [0, 1] through ``network``: compiled
        kernels for a shape warmed up with compilation on, the eager module for any other."""
        shape = (int(images.shape[2]), int(images.shape[3]))
        compiled = self._compiled.get(network)
        layout = self.formats[network]
        with torch.inference_mode(), fp32_math(tf32=self.tf32), self._autocast():
            if compiled is None or shape not in self._compiled_shapes[network]:
                module = self.networks[network]
                return list(module(images.contiguous(memory_format=layout)))
            # The compiled graphs were traced on inference tensors: give them one (a tensor
            # made outside inference mode would fail the guards and recompile).
            if images.is_inference():
                images = images.contiguous(memory_format=layout)
            else:
                images = images.clone(memory_format=layout)
            return compiled(batch_dynamic(images))

    def warm_up(
        self, shapes: Iterable[Shape], batch_size: int, max_pixels: int | None = None
    ) -> None:
        """Run each shape through each network (a shape under a network's smallest side skips
        it) at ``2 * batch_size`` rows (uncached references plus candidates) so the allocator
        and oneDNN/cuDNN settle; fewer where ``max_pixels`` (the activation budget) admits fewer
        pairs of the shape. With compilation on, or on CUDA (where cuDNN picks algorithms per
        input shape), run every row count a batch can bring, from the largest down to 1."""
        shapes = list(dict.fromkeys(shapes))
        if self._compiled:
            allow_graphs(len(shapes) * 2 * batch_size)
        generator = torch.Generator().manual_seed(0)
        with torch.inference_mode():
            for height, width in shapes:
                pairs = batch_size
                if max_pixels is not None:
                    pairs = max(1, min(batch_size, max_pixels // (2 * height * width)))
                rows = 2 * pairs
                images = torch.rand(rows, 3, height, width, generator=generator, device="cpu")
                images = images.to(self.device)
                for network in self.networks:
                    if min(height, width) >= _min_side(network):
                        self._warm(network, images)
        self.synchronize()

    def _warm(self, network: str, images: torch.Tensor) -> None:
        if network in self._compiled and self._compile_shape(network, images):
            return  # every row count ran, compiled
        counts = range(images.shape[0], 0, -1) if self.device.type == "cuda" else [images.shape[0]]
        for count in counts:
            self.forward(images[:count], network)

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

    def _compile_shape(self, network: str, images: torch.Tensor) -> bool:
        """Compile ``network`` for ``images``' shape by running every row count up to
        ``images``', from the largest down; whether it worked (if not, the shape stays eager).

        The batch axis is dynamic, so row counts share graphs; dynamo still splits them into a
        few (1 alone; oneDNN picks its convolution by batch size, so 2-15 and 16 up differ):
        running each count here leaves none to compile on the request path."""
        import torch._inductor.config as inductor_config

        shape = (int(images.shape[2]), int(images.shape[3]))
        shapes = self._compiled_shapes[network]
        shapes.add(shape)
        try:
            # Freezing: the weights become constants, folded and pre-packed for oneDNN (set
            # while tracing: torch.compile's `options` do not reach it).
            with inductor_config.patch(freezing=True):
                for count in range(images.shape[0], 0, -1):
                    self.forward(images[:count], network)
        except Exception:
            shapes.discard(shape)
            log.exception("compiling %s for %s failed; that shape runs eagerly", network, shape)
            return False
        return True

    def _autocast(self) -> contextlib.AbstractContextManager[object]:
        if self.precision == "fp32":
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=AUTOCAST_DTYPES[self.precision])

    def _host_buffer(self, shape: tuple[int, ...]) -> tuple[torch.Tensor, HostSlot | None]:
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


def _min_side(network: str) -> int:
    """The smallest side ``network`` accepts (the registry's; 1 for one it does not know)."""
    for spec in registry.BACKBONES.values():
        for entry in spec.networks:
            if entry.name == network:
                return entry.min_side
    return 1
