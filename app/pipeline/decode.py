"""The decode stage: a request's uploaded bytes -> its images at the compared size.

``Decoder`` owns what decoding needs: the decode threads (``SIMSCORE_DECODE_THREADS``; the event
loop never decodes), the per-request pixel budget (``SIMSCORE_MAX_REQUEST_PIXELS``) and the
decoded-memory budget all requests share (``SIMSCORE_DECODED_MEMORY_BYTES``). A request's
images count against that budget from their decode until its ``decode`` block ends (after its
pairs are scored); a request that is cancelled (client gone, deadline passed) cancels its decodes
that have not started.

The requests in flight take turns on the threads (``app.pipeline.pool``: a lane per request, the
request's pixel budget standing for it), so that a request of many uploads holds a small one
behind at most one of its decodes per thread.

The reference is decoded first (a candidate is sized to it), then the mask at its size, then the
candidates, concurrently; each candidate fails alone (its item is the exception), the reference
or the mask fails the request. Each image's decoding is a ``decode`` span (``spans``).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Hashable, Sequence
from typing import TypeVar

import torch

from app.budgets import Budget, DecodedBytes, RequestPixels, Take
from app.config import Settings
from app.cpus import sized_to_cpus
from app.errors import InvalidRequest, Overloaded
from app.imaging import (
    PreparedImage,
    decode_plane,
    prepare_candidate,
    prepare_reference,
    quiet_pillow,
)
from app.imaging.decode import Size
from app.pipeline.pool import FairPool
from app.pipeline.spans import decoded_attributes, upload_attributes
from app.pipeline.types import CompareOptions, DecodedRequest
from app.scores import masks
from app.scoring.references import reference_key
from app.tracing import Tracing
from app.vocabulary import preprocessing_tag

R = TypeVar("R")
MASK = "mask"
DEFAULT_DECODE_THREADS = 4  # each may hold one image's decode peak: docs/security.md


def decode_threads(settings: Settings) -> int:
    """``SIMSCORE_DECODE_THREADS`` if set, else 4, lowered to the CPUs this process may use
    (affinity, cgroup quota: ``app.cpus``)."""
    return sized_to_cpus(settings.decode_threads, at_most=DEFAULT_DECODE_THREADS)


class Decoder:
    """The decode stage (see the module docstring)."""

    def __init__(self, settings: Settings, tracing: Tracing | None = None) -> None:
        self.settings = settings
        self.tracing = tracing or Tracing()
        self._pool = FairPool(decode_threads(settings), "simscore-decode")
        self.memory = DecodedBytes(settings.decoded_memory_bytes)
        self._preprocessing = preprocessing_tag(settings.max_side)
        quiet_pillow()

    @property
    def waiting(self) -> int:
        """Decodes queued for a thread, not started yet (cancelled ones too, until passed)."""
        return self._pool.pending

    def pixel_budget(self) -> Budget:
        return RequestPixels(self.settings.max_request_pixels)

    async def run(self, lane: Hashable, fn: Callable[..., R], *args: object) -> R:
        """``fn(*args)`` on a decode thread, in ``lane``'s turn (a request's lane: its pixel
        budget)."""
        return await asyncio.wrap_future(self._pool.submit(lane, fn, *args))

    @contextlib.asynccontextmanager
    async def decode(
        self,
        reference: bytes,
        candidates: Sequence[bytes],
        options: CompareOptions,
        budget: Budget,
    ) -> AsyncIterator[DecodedRequest]:
        """The request's images, counted as held memory until the block ends."""
        started = time.monotonic()
        with self.memory.holding() as take:
            ref, key = await self._traced(
                "reference", reference, self.run(budget, self._reference, reference, budget)
            )
            take(_nbytes(ref.tensor), "reference")
            mask = None
            if options.mask is not None:
                mask = await self._traced(
                    MASK, options.mask, self.run(budget, self._mask, options.mask, ref.size, budget)
                )
                take(_nbytes(mask), MASK)
            decoded = await asyncio.gather(
                *(
                    self._traced(
                        "candidate", c, self.run(budget, self._candidate, c, ref, options, budget)
                    )
                    for c in candidates
                ),
                return_exceptions=True,
            )
            yield DecodedRequest(
                reference=ref,
                reference_key=key,
                mask=mask,
                candidates=[_held(item, take) for item in decoded],
                decode_ms=(time.monotonic() - started) * 1000,
            )

    def close(self) -> None:
        self._pool.shutdown()

    async def _traced(self, role: str, data: bytes, work: Awaitable[R]) -> R:
        """``work``, the decoding of one image, in its ``decode`` span."""
        if not self.tracing.enabled:
            return await work
        with self.tracing.span("decode", upload_attributes(role, data)) as span:
            result = await work
            image = result[0] if isinstance(result, tuple) else result
            if isinstance(image, PreparedImage | torch.Tensor):
                span.set_attributes(decoded_attributes(image))
            return result

    def _reference(self, data: bytes, budget: Budget) -> tuple[PreparedImage, str]:
        image = prepare_reference(
            data,
            max_pixels=self.settings.max_pixels,
            max_side=self.settings.max_side,
            budget=budget,
        )
        return image, reference_key(image.tensor, self._preprocessing)

    def _candidate(
        self, data: bytes, reference: PreparedImage, options: CompareOptions, budget: Budget
    ) -> PreparedImage:
        return prepare_candidate(
            data,
            reference,
            max_pixels=self.settings.max_pixels,
            size_policy=options.size_policy or self.settings.default_size_policy,
            budget=budget,
        )

    def _mask(self, data: bytes, size: Size, budget: Budget) -> torch.Tensor:
        return decode_mask(data, size, max_pixels=self.settings.max_pixels, budget=budget)


def decode_mask(
    data: bytes, size: Size, *, max_pixels: int, budget: Budget | None = None
) -> torch.Tensor:
    """A mask upload at the compared ``size`` (width, height): ``(1, H, W)`` bool, decoded like
    an image (screened, within the pixel limits, upright) and read by ``app.scores.masks``'s
    rule; 422 when it selects nothing."""
    if not data:
        raise InvalidRequest("the mask is empty (0 bytes); upload the mask image itself")
    selected = decode_plane(data, masks.selection, what=MASK, max_pixels=max_pixels, budget=budget)
    mask = masks.at_size(selected, size)
    masks.check_selects(mask)
    return mask


def _held(item: PreparedImage | BaseException, take: Take) -> PreparedImage | BaseException:
    """A decoded candidate counted as held memory, or the error that refuses it alone."""
    if not isinstance(item, PreparedImage):
        return item
    try:
        take(_nbytes(item.tensor), "candidate")
    except Overloaded as exc:
        return exc
    return item


def _nbytes(tensor: torch.Tensor) -> int:
    return tensor.numel() * tensor.element_size()
