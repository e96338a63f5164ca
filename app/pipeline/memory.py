"""Decoded images held by the requests in flight, bounded in bytes
(``SIMSCORE_DECODED_MEMORY_BYTES``).

A few bytes of GIF decode to a full-size image, and a batch request holds all its candidates
decoded before they enter the queue; without this bound, requests in flight could hold many
gigabytes of float tensors. Used on the event loop only (each image is counted once its decode
thread hands it back).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

import torch

from app.errors import Overloaded
from app.imaging import PreparedImage

Hold = Callable[[torch.Tensor], None]


class DecodedMemory:
    """Bytes of decoded tensors held by requests in flight, at most ``limit``."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.used = 0

    @contextlib.contextmanager
    def request(self) -> Iterator[Hold]:
        """For one request: a function that counts a decoded tensor against the limit (429 past
        it); everything it counted is given back when the block ends."""
        held = 0

        def hold(tensor: torch.Tensor) -> None:
            nonlocal held
            size = tensor.numel() * tensor.element_size()
            if self.used + size > self.limit:
                raise Overloaded(
                    f"decoded images in flight already hold {self.used} bytes of "
                    f"SIMSCORE_DECODED_MEMORY_BYTES={self.limit}; retry after a short wait"
                )
            self.used += size
            held += size

        try:
            yield hold
        finally:
            self.used -= held


def held_or_refused(
    item: PreparedImage | BaseException, hold: Hold
) -> PreparedImage | BaseException:
    """A decoded candidate counted as held memory, or the error that refuses it alone."""
    if not isinstance(item, PreparedImage):
        return item
    try:
        hold(item.tensor)
    except Overloaded as exc:
        return exc
    return item
