"""Budgets, one idea with one owner: an amount (bytes, pixels) that what a budget covers may not
pass. Taking past it raises the budget's own refusal, which names its setting; ``holding`` gives
back, when its block ends, everything taken in it. Thread-safe (decode threads take from them).

======================= =================================== ============ ===================
budget                  setting                             covers       past it
======================= =================================== ============ ===================
``UploadBytes``         ``SIMSCORE_UPLOAD_MEMORY_BYTES``    every upload 429, retry shortly
                                                            in flight
``DecodedBytes``        ``SIMSCORE_DECODED_MEMORY_BYTES``   every decoded 429 (a candidate of a
                                                            image held   batch fails alone)
``RequestPixels``       ``SIMSCORE_MAX_REQUEST_PIXELS``     one request's 413, send fewer or
                                                            source pixels smaller images
======================= =================================== ============ ===================

The service owns the uploads' budget (the read stage takes from it as a body streams in), the
decode stage the other two (``app.pipeline.decode``).
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator

from app.errors import ImageTooLarge, Overloaded, SimscoreError

Take = Callable[[int, str], None]  # take(amount, what)


class Budget:
    """An amount that may not pass ``limit`` (see the module docstring)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.used = 0
        self._lock = threading.Lock()

    def take(self, amount: int, what: str = "") -> None:
        """Count ``amount`` more, or raise the budget's refusal (counting nothing)."""
        with self._lock:
            if self.used + amount > self.limit:
                raise self.refusal(amount, what)
            self.used += amount

    def give_back(self, amount: int) -> None:
        with self._lock:
            self.used -= amount

    @contextlib.contextmanager
    def holding(self) -> Iterator[Take]:
        """A ``take`` whose amounts are all given back when the block ends."""
        held = 0

        def take(amount: int, what: str = "") -> None:
            nonlocal held
            self.take(amount, what)
            held += amount

        try:
            yield take
        finally:
            self.give_back(held)

    def refusal(self, amount: int, what: str) -> SimscoreError:
        raise NotImplementedError


class UploadBytes(Budget):
    """Bytes of uploads that every request in flight holds in memory together."""

    def refusal(self, amount: int, what: str) -> SimscoreError:
        return Overloaded(
            f"uploads in flight already hold {self.used} bytes of "
            f"SIMSCORE_UPLOAD_MEMORY_BYTES={self.limit}; retry after a short wait"
        )


class DecodedBytes(Budget):
    """Bytes of decoded images that every request in flight holds together."""

    def refusal(self, amount: int, what: str) -> SimscoreError:
        return Overloaded(
            f"decoded images in flight already hold {self.used} bytes of "
            f"SIMSCORE_DECODED_MEMORY_BYTES={self.limit}; retry after a short wait"
        )


class RequestPixels(Budget):
    """Source pixels that one request's images may decode, together."""

    def refusal(self, amount: int, what: str) -> SimscoreError:
        return ImageTooLarge(
            f"the {what} would bring this request's images to {self.used + amount} "
            f"pixels, over SIMSCORE_MAX_REQUEST_PIXELS={self.limit}; send fewer or "
            "smaller images per request"
        )
