"""The scoring engine: one VGG19 forward pass per batch, then every metric per pair.

``Scorer.score`` takes pairs of one tensor shape and returns one ``PairScores`` each. The
references and candidates of a batch go through VGG19 together (one concatenated forward);
a reference that several pairs share, or that the reference cache holds, is run once or not at
all. Every score depends only on its own pair, never on the rest of the batch.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import TypeVar

import torch

from app.metrics import (
    gram_matrix,
    mse,
    psnr,
    reference_moments,
    ssim,
    style_distance,
    vgg_distance,
)
from app.models.vgg import TAP_NAMES, VGGFeatures
from app.reference_cache import ReferenceCache, ReferenceFeatures

log = logging.getLogger(__name__)

METRIC_NAMES: tuple[str, ...] = ("vgg", "style", "ssim", "mse", "psnr")
FEATURE_METRICS = frozenset({"vgg", "style"})
ALL_METRICS = frozenset(METRIC_NAMES)
T = TypeVar("T")
AUTOCAST_DTYPES = {"fp16": torch.float16, "bf16": torch.bfloat16}


@dataclass(frozen=True)
class PairRequest:
    """One pair to score: two ``(3, H, W)`` float tensors in [0, 1] of one shape."""

    reference: torch.Tensor
    candidate: torch.Tensor
    metrics: frozenset[str] = ALL_METRICS
    reference_key: str | None = None  # see app.reference_cache.reference_key

    def __post_init__(self) -> None:
        if self.reference.shape != self.candidate.shape or self.reference.dim() != 3:
            raise ValueError(
                f"reference {tuple(self.reference.shape)} and candidate "
                f"{tuple(self.candidate.shape)} must both be (3, H, W) of one shape"
            )
        unknown = self.metrics - ALL_METRICS
        if unknown or not self.metrics:
            raise ValueError(f"metrics must be a non-empty subset of {METRIC_NAMES}")

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.reference.shape)


@dataclass(frozen=True)
class PairScores:
    """Scores of one pair; a metric not asked for is ``None``. ``psnr`` is ``inf`` for equal
    images."""

    vgg: float | None = None
    style: float | None = None
    ssim: float | None = None
    mse: float | None = None
    psnr: float | None = None
    vgg_layers: dict[str, float] | None = None
    style_layers: dict[str, float] | None = None
    reference_cached: bool = False


@dataclass(frozen=True)
class ModelInfo:
    """What produced the scores, for every result's ``model`` field."""

    name: str
    weights: str
    sha256: str
    device: str
    precision: str


def is_out_of_memory(exc: BaseException) -> bool:
    """True for a device (or host) allocation failure that a smaller batch may avoid."""
    if isinstance(exc, torch.OutOfMemoryError):
        return True
    return isinstance(exc, RuntimeError) and "can't allocate memory" in str(exc)


@dataclass
class _Reference:
    """A reference's features within one batch, filled in as needed."""

    first: int  # index of the first pair that uses this reference
    cacheable: bool
    found: ReferenceFeatures | None = None
    taps: tuple[torch.Tensor, ...] | None = None
    grams: tuple[torch.Tensor, ...] | None = None
    moments: torch.Tensor | None = None
    changed: bool = field(default=False)
    ran_model: bool = field(default=False)  # VGG19 ran on it in this batch


class Scorer:
    """Scores batches of pairs on one device with one VGG19 extractor."""

    def __init__(
        self,
        extractor: VGGFeatures,
        *,
        device: torch.device,
        precision: str = "fp32",
        channels_last: bool = True,
        cache: ReferenceCache | None = None,
    ) -> None:
        if precision not in ("fp32", *AUTOCAST_DTYPES):
            raise ValueError(f"precision must be fp32, fp16 or bf16, not {precision!r}")
        if precision != "fp32" and device.type != "cuda":
            log.warning("precision %s needs CUDA; using fp32 on %s", precision, device)
            precision = "fp32"
        self.device = device
        self.precision = precision
        self.channels_last = channels_last
        self.cache = cache if cache is not None else ReferenceCache(0, 0)
        memory_format = torch.channels_last if channels_last else torch.contiguous_format
        self.extractor = extractor.to(device).to(memory_format=memory_format).eval()
        if device.type == "cuda":
            torch.backends.cudnn.benchmark = True

    def score(self, pairs: Sequence[PairRequest]) -> list[PairScores]:
        """Score pairs of one shape; see the module docstring."""
        if not pairs:
            return []
        shapes = {p.shape for p in pairs}
        if len(shapes) != 1:
            raise ValueError(f"a batch must hold one tensor shape, got {sorted(shapes)}")
        with torch.inference_mode():
            return self._score(pairs)

    def warm_up(self, shapes: Iterable[tuple[int, int]], batch_size: int) -> None:
        """Run full batches of each square size once (allocator, cudnn autotuning).

        On CUDA, ``cudnn.benchmark`` autotunes every new input shape on first use, and a batch's
        forward takes 1 to ``2 * batch_size`` rows (uncached references plus candidates), so
        the forward also runs once at each of those row counts: no request pays for tuning.
        """
        generator = torch.Generator().manual_seed(0)
        for height, width in shapes:
            pairs = [
                PairRequest(
                    torch.rand(3, height, width, generator=generator),
                    torch.rand(3, height, width, generator=generator),
                )
                for _ in range(batch_size)
            ]
            self.score(pairs)
            if self.device.type == "cuda":
                with torch.inference_mode():
                    for rows in range(1, 2 * batch_size + 1):
                        self._forward(torch.zeros(rows, 3, height, width, device=self.device))
        self.synchronize()

    def synchronize(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def memory_allocated_bytes(self) -> int:
        return torch.cuda.memory_allocated(self.device) if self.device.type == "cuda" else 0

    def release_memory(self) -> None:
        """After an out-of-memory error: drop cached references and free cached blocks."""
        self.cache.clear()
        if self.device.type == "cuda":
            torch.cuda.empty_cache()

    # -- internals -------------------------------------------------------------------------

    def _score(self, pairs: Sequence[PairRequest]) -> list[PairScores]:
        refs = self._to_device(torch.stack([p.reference for p in pairs]))
        cands = self._to_device(torch.stack([p.candidate for p in pairs]))
        keys = [p.reference_key or f"\0pair{i}" for i, p in enumerate(pairs)]
        references = self._lookup(pairs, keys)
        values: dict[str, list[float | None]] = {name: [None] * len(pairs) for name in METRIC_NAMES}
        layers: dict[str, list[dict[str, float] | None]] = {
            "vgg": [None] * len(pairs),
            "style": [None] * len(pairs),
        }

        pixel = [i for i, p in enumerate(pairs) if p.metrics & {"mse", "psnr"}]
        if pixel:
            errors = mse(refs[pixel], cands[pixel])
            self._put(values, "mse", pixel, errors, pairs)
            self._put(values, "psnr", pixel, psnr(errors), pairs)

        structural = [i for i, p in enumerate(pairs) if "ssim" in p.metrics]
        if structural:
            self._fill_moments(refs, references, [keys[i] for i in structural])
            moments = torch.cat([self._moments_of(references[keys[i]]) for i in structural])
            self._put(
                values,
                "ssim",
                structural,
                ssim(refs[structural], cands[structural], x_moments=moments),
                pairs,
            )

        featured = [i for i, p in enumerate(pairs) if p.metrics & FEATURE_METRICS]
        if featured:
            cand_taps = self._fill_taps_and_forward(refs, cands, references, keys, featured)
            ref_taps = self._gather(references, [keys[i] for i in featured], "taps")
            total, per_tap = vgg_distance(ref_taps, cand_taps)
            self._put(values, "vgg", featured, total, pairs, layers["vgg"], per_tap)
            cand_grams = [gram_matrix(t) for t in cand_taps]
            ref_grams = self._gather(references, [keys[i] for i in featured], "grams")
            total, per_tap = style_distance(ref_grams, cand_grams)
            self._put(values, "style", featured, total, pairs, layers["style"], per_tap)

        self._store(references)
        # A partial entry (stored by a request for a metric subset) may still need a forward.
        cached = {k for k, ref in references.items() if ref.found is not None and not ref.ran_model}
        return [
            PairScores(
                vgg=values["vgg"][i],
                style=values["style"][i],
                ssim=values["ssim"][i],
                mse=values["mse"][i],
                psnr=values["psnr"][i],
                vgg_layers=layers["vgg"][i],
                style_layers=layers["style"][i],
                reference_cached=keys[i] in cached,
            )
            for i in range(len(pairs))
        ]

    def _lookup(self, pairs: Sequence[PairRequest], keys: list[str]) -> dict[str, _Reference]:
        references: dict[str, _Reference] = {}
        for i, key in enumerate(keys):
            if key in references:
                continue
            cacheable = pairs[i].reference_key is not None and self.cache.enabled
            found = self.cache.get(key) if cacheable else None
            references[key] = _Reference(
                first=i,
                cacheable=cacheable,
                found=found,
                taps=found.taps if found else None,
                grams=found.grams if found else None,
                moments=found.ssim_moments if found else None,
            )
        return references

    def _fill_moments(
        self, refs: torch.Tensor, references: dict[str, _Reference], keys: Iterable[str]
    ) -> None:
        missing = [k for k in dict.fromkeys(keys) if references[k].moments is None]
        if not missing:
            return
        moments = reference_moments(refs[[references[k].first for k in missing]])
        for j, key in enumerate(missing):
            references[key].moments = moments[j : j + 1]
            references[key].changed = True

    def _fill_taps_and_forward(
        self,
        refs: torch.Tensor,
        cands: torch.Tensor,
        references: dict[str, _Reference],
        keys: list[str],
        featured: list[int],
    ) -> list[torch.Tensor]:
        """One forward over the uncached references and the candidates; returns the
        candidates' taps and fills in the references' taps and Gram matrices."""
        missing = [
            k for k in dict.fromkeys(keys[i] for i in featured) if references[k].taps is None
        ]
        inputs = torch.cat([refs[[references[k].first for k in missing]], cands[featured]])
        taps = self._forward(inputs)
        m = len(missing)
        if m:
            grams = [gram_matrix(t[:m]) for t in taps]
            for j, key in enumerate(missing):
                ref = references[key]
                ref.taps = tuple(t[j : j + 1] for t in taps)
                ref.grams = tuple(g[j : j + 1] for g in grams)
                ref.changed = True
                ref.ran_model = True
        return [t[m:] for t in taps]

    def _forward(self, images: torch.Tensor) -> list[torch.Tensor]:
        if self.channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        with self._autocast():
            taps: list[torch.Tensor] = self.extractor(images)
        return taps

    def _autocast(self) -> contextlib.AbstractContextManager[object]:
        if self.precision == "fp32":
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=AUTOCAST_DTYPES[self.precision])

    def _to_device(self, batch: torch.Tensor) -> torch.Tensor:
        if self.device.type == "cuda":
            return batch.pin_memory().to(self.device, non_blocking=True)
        return batch.to(self.device)

    def _store(self, references: dict[str, _Reference]) -> None:
        for key, ref in references.items():
            if not (ref.cacheable and ref.changed):
                continue
            entry = ReferenceFeatures(
                taps=_detached(ref.taps),
                grams=_detached(ref.grams),
                ssim_moments=None if ref.moments is None else ref.moments.clone(),
            )
            self.cache.put(key, entry)

    @staticmethod
    def _gather(
        references: dict[str, _Reference], pair_keys: list[str], what: str
    ) -> list[torch.Tensor]:
        """Per tap, the references' tensors lined up with the pairs.

        Without copies in the two common cases: every pair has its own freshly computed
        reference (a view of the forward batch), or all pairs share one reference (expanded).
        """
        per_pair: list[tuple[torch.Tensor, ...]] = []
        for key in pair_keys:
            tensors = getattr(references[key], what)
            if tensors is None:
                raise RuntimeError(f"reference {what} were not computed")
            per_pair.append(tensors)
        gathered = []
        for tap in range(len(per_pair[0])):
            parts = [tensors[tap] for tensors in per_pair]
            first = parts[0]
            if all(p is first for p in parts):
                gathered.append(first.expand(len(parts), *first.shape[1:]))
            elif _consecutive_rows(parts):
                base = parts[0]
                gathered.append(base.as_strided((len(parts), *base.shape[1:]), base.stride()))
            else:
                gathered.append(torch.cat(parts))
        return gathered

    @staticmethod
    def _moments_of(ref: _Reference) -> torch.Tensor:
        if ref.moments is None:
            raise RuntimeError("reference SSIM moments were not computed")
        return ref.moments

    @staticmethod
    def _put(
        values: dict[str, list[float | None]],
        name: str,
        indices: list[int],
        result: torch.Tensor,
        pairs: Sequence[PairRequest],
        layer_out: list[dict[str, float] | None] | None = None,
        per_tap: torch.Tensor | None = None,
    ) -> None:
        numbers = result.double().tolist()
        rows = per_tap.double().tolist() if per_tap is not None else None
        for j, i in enumerate(indices):
            if name not in pairs[i].metrics:
                continue
            values[name][i] = numbers[j]
            if layer_out is not None and rows is not None:
                layer_out[i] = dict(zip(TAP_NAMES, rows[j], strict=True))


def _consecutive_rows(parts: list[torch.Tensor]) -> bool:
    """True if the one-row views ``parts`` are rows 0, 1, 2, ... of one batch tensor, in order."""
    base = parts[0]
    step = base.stride(0)
    return all(
        p.untyped_storage().data_ptr() == base.untyped_storage().data_ptr()
        and p.storage_offset() == base.storage_offset() + i * step
        and p.shape == base.shape
        and p.stride() == base.stride()
        for i, p in enumerate(parts)
    )


def _detached(tensors: tuple[torch.Tensor, ...] | None) -> tuple[torch.Tensor, ...] | None:
    """Copies that do not keep a whole batch's activations alive in the cache."""
    return None if tensors is None else tuple(t.clone() for t in tensors)


def iter_batches(items: Sequence[T], size: int) -> Iterator[Sequence[T]]:
    """Consecutive chunks of ``size`` (for the CLI and benchmarks)."""
    for start in range(0, len(items), size):
        yield items[start : start + size]


__all__ = [
    "METRIC_NAMES",
    "ModelInfo",
    "PairRequest",
    "PairScores",
    "Scorer",
    "is_out_of_memory",
    "iter_batches",
]
