"""References within a batch and across batches: each distinct reference is run through each
network its pairs need once per batch, or not at all when the reference cache holds its taps.

``ReferenceCache`` is an LRU of what scoring needs of a reference (VGG19's taps, Gram matrices,
SSIM moments, and each other network's taps: the parts ``taps_part(network)``), keyed by
``reference_key`` (a hash of the decoded tensor and how it was prepared) and bounded by entries
and bytes. An entry gains the parts later requests compute (a reference first scored for vgg,
then for lpips, holds VGG19's and AlexNet's taps). ``BatchReferences`` is the bookkeeping of one
batch: which pair uses which reference, what the cache already has, what is computed now, what
to store after. Used only from the scoring thread.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

import torch

from app.scoring.device import index_on

Part = str  # "taps" (VGG19's), "grams", "moments", or taps_part(network) for another network
PARTS: tuple[Part, ...] = ("taps", "grams", "moments")
TAPS = "taps"


def taps_part(network: str) -> Part:
    """The part that holds ``network``'s taps of a reference: ``taps`` for VGG19 (as before),
    ``taps.<network>`` for another."""
    return TAPS if network == "vgg19" else f"{TAPS}.{network}"


class CacheObserver(Protocol):
    """Where the cache reports hits, misses and its size (the service wires Prometheus)."""

    def cache_lookup(self, hit: bool) -> None: ...

    def cache_bytes(self, nbytes: int) -> None: ...


def reference_key(tensor: torch.Tensor, preprocessing: str) -> str:
    """A content hash of a decoded ``(3, H, W)`` reference and how it was prepared."""
    digest = hashlib.blake2b(digest_size=16)
    digest.update(f"{preprocessing}|{tuple(tensor.shape)}|{tensor.dtype}".encode())
    digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


@dataclass(frozen=True)
class ReferenceFeatures:
    """What scoring keeps of one reference, each with a leading batch axis of 1."""

    taps: tuple[torch.Tensor, ...] | None = None  # VGG activations per tap, (1, C, H, W)
    grams: tuple[torch.Tensor, ...] | None = None  # Gram matrices per tap, (1, C, C)
    moments: tuple[torch.Tensor] | None = None  # reference_moments(x), (1, 6, H-10, W-10)
    # the other networks' taps, by part (taps_part(network)): (1, C, H, W) per tap
    networks: Mapping[Part, tuple[torch.Tensor, ...]] = field(default_factory=dict)

    def get(self, part: Part) -> tuple[torch.Tensor, ...] | None:
        if part in PARTS:
            value: tuple[torch.Tensor, ...] | None = getattr(self, part)
            return value
        return self.networks.get(part)

    @property
    def parts(self) -> tuple[Part, ...]:
        return (*PARTS, *self.networks)

    @property
    def nbytes(self) -> int:
        tensors = [t for part in self.parts for t in (self.get(part) or ())]
        return sum(t.numel() * t.element_size() for t in tensors)


class ReferenceCache:
    """LRU bounded by ``max_entries`` and ``max_bytes``; 0 entries turns it off."""

    def __init__(
        self, max_entries: int, max_bytes: int, observer: CacheObserver | None = None
    ) -> None:
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self._observer = observer
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
        if entry is not None:
            self._entries.move_to_end(key)
        if self._observer:
            self._observer.cache_lookup(hit=entry is not None)
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
        self._report()

    def clear(self) -> None:
        self._entries.clear()
        self._bytes = 0
        self._report()

    def _report(self) -> None:
        if self._observer:
            self._observer.cache_bytes(self._bytes)


@dataclass(frozen=True)
class _Rows:
    """Tensors whose row ``row`` belongs to one reference: a batch's stacked output, or a cached
    entry (row 0)."""

    tensors: tuple[torch.Tensor, ...]
    row: int


@dataclass
class _Reference:
    """One distinct reference of a batch."""

    key: str | None  # None: not cacheable (no key, or the cache is off)
    first: int  # the first pair (row) that uses it: where its pixels are
    cached: bool = False  # the reference cache had an entry for it
    parts: dict[Part, _Rows] = field(default_factory=dict)
    computed: set[Part] = field(default_factory=set)  # filled in this batch, not from the cache


class BatchReferences:
    """The distinct references of one batch (see the module docstring)."""

    def __init__(self, keys: Sequence[str | None], cache: ReferenceCache) -> None:
        self._cache = cache
        self._refs: list[_Reference] = []
        self.index: list[int] = []  # pair row -> its reference
        by_key: dict[str, int] = {}
        for row, key in enumerate(keys):
            if key is not None and key in by_key:
                self.index.append(by_key[key])
                continue
            cacheable = key if key is not None and cache.enabled else None
            found = cache.get(cacheable) if cacheable is not None else None
            reference = _Reference(cacheable, row, cached=found is not None)
            if found is not None:
                for part in found.parts:
                    if (tensors := found.get(part)) is not None:
                        reference.parts[part] = _Rows(tensors, 0)
            if key is not None:
                by_key[key] = len(self._refs)
            self.index.append(len(self._refs))
            self._refs.append(reference)

    def missing(self, part: Part, rows: Sequence[int]) -> list[int]:
        """The references (by number) of ``rows`` that lack ``part``, each once, in order."""
        wanted = dict.fromkeys(self.index[row] for row in rows)
        return [r for r in wanted if part not in self._refs[r].parts]

    def pixel_rows(self, references: Sequence[int]) -> list[int]:
        """For each reference, a pair row that holds its pixels."""
        return [self._refs[r].first for r in references]

    def fill(self, part: Part, references: Sequence[int], stacked: Sequence[torch.Tensor]) -> None:
        """Give ``references`` their ``part``: row ``i`` of each tensor of ``stacked``."""
        shared = tuple(stacked)
        for i, r in enumerate(references):
            self._refs[r].parts[part] = _Rows(shared, i)
            self._refs[r].computed.add(part)

    def derive(
        self,
        part: Part,
        rows: Sequence[int],
        compute: Callable[[list[int]], Sequence[torch.Tensor]],
    ) -> None:
        """Fill ``part`` for the references of ``rows`` that lack it, with ``compute(references)``
        (stacked in the order of the references it is given)."""
        missing = self.missing(part, rows)
        if missing:
            self.fill(part, missing, compute(missing))

    def of(self, part: Part, references: Sequence[int]) -> list[torch.Tensor]:
        """Per tensor of ``part``, the rows of ``references``, stacked in their order."""
        return self._gather(part, references)

    def gather(self, part: Part, rows: Sequence[int]) -> list[torch.Tensor]:
        """Per tensor of ``part``, the references' rows lined up with the pair ``rows``."""
        return self._gather(part, [self.index[row] for row in rows])

    def from_cache(self, row: int) -> bool:
        """Whether pair ``row``'s reference came from the cache, with no forward pass for it
        (through any network)."""
        reference = self._refs[self.index[row]]
        return reference.cached and not any(p.startswith(TAPS) for p in reference.computed)

    def store(self) -> None:
        """Put what this batch computed for cacheable references into the cache (as copies, so
        an entry does not keep a whole batch's activations alive)."""
        for reference in self._refs:
            if reference.key is None or not reference.computed:
                continue
            copies = {
                part: tuple(t[rows.row : rows.row + 1].clone() for t in rows.tensors)
                for part, rows in reference.parts.items()
            }
            entry = ReferenceFeatures(
                taps=copies.get("taps"),
                grams=copies.get("grams"),
                moments=copies.get("moments"),  # type: ignore[arg-type]
                networks={p: t for p, t in copies.items() if p not in PARTS},
            )
            self._cache.put(reference.key, entry)

    def _gather(self, part: Part, references: Sequence[int]) -> list[torch.Tensor]:
        sources = [self._refs[r].parts[part] for r in references]
        first = sources[0]
        if all(s is first for s in sources):  # one shared reference: a broadcast view
            return [
                t[first.row : first.row + 1].expand(len(sources), *t.shape[1:])
                for t in first.tensors
            ]
        if all(s.tensors is first.tensors for s in sources):
            rows = [s.row for s in sources]
            if rows == list(range(first.tensors[0].shape[0])):  # the stack itself, in order
                return list(first.tensors)
            index = index_on(rows, first.tensors[0].device)
            return [t.index_select(0, index) for t in first.tensors]
        return [
            torch.cat([s.tensors[i][s.row : s.row + 1] for s in sources])
            for i in range(len(first.tensors))
        ]
