"""What the runner's copies between host and device are made of on CUDA: events that mark when a
copy is done with its source, a stream for copies beside the compute stream, and the reused
pinned host buffers. ``app.scoring.runner`` decides when each is used."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import torch


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


class CudaCopyStream:
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


class CudaCopyDone:
    """A CUDA event recorded on ``device``'s current stream (not the current device's: the
    batch worker never sets its thread's device, so on ``cuda:1`` that would be GPU 0's). Its
    wait sleeps (``blocking``) rather than spinning a core."""

    def __init__(self, device: torch.device, *, blocking: bool) -> None:
        self._device = device
        self._event = torch.cuda.Event(blocking=blocking)  # type: ignore[no-untyped-call]

    def record(self) -> None:
        self._event.record(torch.cuda.current_stream(self._device))

    def synchronize(self) -> None:
        self._event.synchronize()


@dataclass
class HostSlot:
    """A reused pinned host buffer and the event of the last copy that read it."""

    buffer: torch.Tensor | None = None
    copied: CopyDone | None = None
