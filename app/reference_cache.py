"""An LRU of reference-image features, so a golden image is run through VGG19 once.

Keyed by ``reference_key`` (a hash of the decoded reference tensor and the preprocessing that
produced it); bounded by entries and by bytes. Used only from the scoring thread.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from dataclasses import dataclass

import torch

from app.observability import Metrics


@dataclass(frozen=True)
class ReferenceFeatures:
    """What scoring needs of one reference, each with a leading batch axis of 1."""

    taps: tuple[torch.Tensor, ...] | None  # VGG activations per tap, (1, C, H, W)
    grams: tuple[torch.Tensor, ...] | None  # Gram matrices per tap, (1, C, C)
    ssim_moments: torch.Tensor | None  # reference_moments(x), (1, 6, H-10, W-10)

    @property
    def nbytes(self) -> int:
        tensors = [*(self.taps or ()), *(self.grams or ())]
        if self.ssim_moments is not None:
            tensors.append(self.ssim_moments)
        return sum(t.numel() * t.element_size() for t in tensors)


def reference_key(tensor: torch.Tensor, preprocessing: str) -> str:
    """A content hash of a decoded ``(3, H, W)`` reference and how it was prepared."""
    digest = hashlib.blake2b(digest_size=16)
    digest.update(f"{preprocessing}|{tuple(tensor.shape)}|{tensor.dtype}".encode())
    digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


class ReferenceCache:
    """LRU bounded by ``max_entries`` and ``max_bytes``; 0 entries turns it off."""

    def __init__(self, max_entries: int, max_bytes: int, metrics: Metrics | None = None) -> None:
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self._metrics = metrics
        self._entries: OrderedDict[str, ReferenceFeatures] = OrderedDict()
        self._bytes = 0

    @property
    def enabled(self) -> bool:
        return self.max_entries > 0 and self.max_bytes > 0

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def nbytes(self) -> int:
        return self._bytes

    def get(self, key: str) -> ReferenceFeatures | None:
        if not self.enabled:
            return None
        entry = self._entries.get(key)
        if entry is None:
            if self._metrics:
                self._metrics.cache_misses.inc()
            return None
        self._entries.move_to_end(key)
        if self._metrics:
            self._metrics.cache_hits.inc()
        return entry

    def put(self, key: str, entry: ReferenceFeatures) -> None:
        size = entry.nbytes
        if not self.enabled or size > self.max_bytes:
            return
        if key in self._entries:
            self._bytes -= self._entries.pop(key).nbytes
        self._entries[key] = entry
        self._bytes += size
        while len(self._entries) > self.max_entries or self._bytes > self.max_bytes:
            _, evicted = self._entries.popitem(last=False)
            self._bytes -= evicted.nbytes
        if self._metrics:
            self._metrics.cache_bytes.set(self._bytes)

    def clear(self) -> None:
        self._entries.clear()
        self._bytes = 0
        if self._metrics:
            self._metrics.cache_bytes.set(0)
