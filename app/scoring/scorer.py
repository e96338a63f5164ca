"""The scoring engine: one VGG19 forward pass per batch, then every requested metric per pair.

``Scorer.score`` takes pairs of one tensor shape and returns one ``PairScores`` each. The
references and candidates of a batch go through VGG19 together; a reference that several pairs
share, or that the reference cache holds, is run once or not at all (``BatchReferences``).
Every score depends only on its own pair, never on the rest of the batch, and a pair of equal
images gets the exact scores of equal images, by definition, on every CPU and in every batch.
The metrics run in IEEE fp32 in every precision mode (TF32 off; TF32 or bf16, when asked for,
belong to the backbone's forward pass alone).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

from app.metrics import (
    gram_matrices,
    mse,
    psnr,
    reference_moments,
    ssim,
    style_distance,
    vgg_distance,
)
from app.scoring.device import fp32_math, index_on
from app.scoring.references import BatchReferences, ReferenceCache
from app.scoring.regions import Regions
from app.scoring.runner import ModelRunner
from app.scoring.sheet import ScoreSheet
from app.scoring.types import PairRequest, PairScores, identical_scores
from app.vocabulary import FEATURE_SCORES, PIXEL_SCORES


class Scorer:
    """Scores batches of pairs with one model runner and one reference cache."""

    def __init__(self, runner: ModelRunner, cache: ReferenceCache | None = None) -> None:
        self.runner = runner
        self.cache = cache if cache is not None else ReferenceCache(0, 0)

    def score(self, pairs: Sequence[PairRequest]) -> list[PairScores]:
        """Scores of pairs of one shape (``launch`` and wait for its results)."""
        return self.launch(pairs)()

    def launch(self, pairs: Sequence[PairRequest]) -> Callable[[], list[PairScores]]:
        """Start scoring pairs of one shape; returns what waits for their scores.

        Equal images get the scores of equal images by definition; the others, their features
        (one forward pass over the references not yet known and the candidates), then each
        requested metric, then one result per pair, read from the device in one transfer. On a
        GPU the work is queued on the device when this returns, and the host is free to prepare
        the next batch until the scores are waited for."""
        if len({p.shape for p in pairs}) > 1:
            raise ValueError(f"a batch must hold one tensor shape, got {[p.shape for p in pairs]}")
        with fp32_math(tf32=False):  # the runner's forward pass alone may set TF32
            equal = [p.identical for p in pairs]
            distinct = [p for p, same in zip(pairs, equal, strict=True) if not same]
            read = self._score_distinct(distinct) if distinct else list

        def scores() -> list[PairScores]:
            scored = iter(read())
            return [
                identical_scores(p.scores) if same else next(scored)
                for p, same in zip(pairs, equal, strict=True)
            ]

        return scores

    def release_memory(self) -> None:
        """After an out-of-memory error: drop cached references and free cached blocks."""
        self.cache.clear()
        self.runner.release_memory()

    def _score_distinct(self, pairs: Sequence[PairRequest]) -> Callable[[], list[PairScores]]:
        sheet = ScoreSheet(pairs)
        refs = BatchReferences([p.reference_key for p in pairs], self.cache)
        with torch.inference_mode():
            images = self.runner.upload([p.reference for p in pairs], [p.candidate for p in pairs])
            regions = Regions(pairs, images.device)
            x, y = images[: len(pairs)], images[len(pairs) :]
            for rows, mask in regions.split(sheet.rows_wanting(PIXEL_SCORES)):
                errors = mse(_take(x, rows), _take(y, rows), mask=mask)
                sheet.put("mse", rows, errors)
                sheet.put("psnr", rows, psnr(errors))
            if rows := sheet.rows_wanting({"ssim"}):
                self._ssim(sheet, refs, x, y, regions.split(rows))
            if rows := sheet.rows_wanting(FEATURE_SCORES):
                self._feature_scores(sheet, refs, images, rows, regions)
            refs.store()
            cached = [refs.from_cache(row) for row in range(len(pairs))]
            return sheet.read_back(self.runner.download, cached)

    def _ssim(
        self,
        sheet: ScoreSheet,
        refs: BatchReferences,
        x: torch.Tensor,
        y: torch.Tensor,
        parts: list[tuple[list[int], torch.Tensor | None]],
    ) -> None:
        """SSIM with the references' moments (cached, or filtered once per reference)."""
        for rows, mask in parts:
            refs.derive(
                "moments", rows, lambda new: [reference_moments(_take(x, refs.pixel_rows(new)))]
            )
            moments = refs.gather("moments", rows)[0]
            values = ssim(_take(x, rows), _take(y, rows), x_moments=moments, mask=mask)
            sheet.put("ssim", rows, values)

    def _feature_scores(
        self,
        sheet: ScoreSheet,
        refs: BatchReferences,
        images: torch.Tensor,
        rows: list[int],
        regions: Regions,
    ) -> None:
        """vgg and style for the pairs of ``rows`` that asked for each (Gram matrices only for
        style; a masked pair's Gram matrices, which depend on its mask, are never cached)."""
        taps = self._candidate_taps(images, refs, rows)
        for part, mask in regions.split(sheet.rows_wanting({"vgg"})):
            fx, fy = refs.gather("taps", part), _rows_of(taps, rows, part)
            sheet.put("vgg", part, *vgg_distance(fx, fy, mask=mask))
        for part, mask in regions.split(sheet.rows_wanting({"style"})):
            fy = _rows_of(taps, rows, part)
            if mask is None:
                refs.derive("grams", part, lambda new: gram_matrices(refs.of("taps", new)))
                gx = refs.gather("grams", part)
            else:
                gx = gram_matrices(refs.gather("taps", part), mask=mask)
            sheet.put("style", part, *style_distance(gx, gram_matrices(fy, mask=mask)))

    def _candidate_taps(
        self, images: torch.Tensor, refs: BatchReferences, rows: list[int]
    ) -> list[torch.Tensor]:
        """The candidates' taps for ``rows``, from one forward pass that also fills in the taps of
        their references not known yet."""
        n = images.shape[0] // 2
        missing = refs.missing("taps", rows)
        ref_rows = refs.pixel_rows(missing)
        if ref_rows == list(range(n)) and rows == ref_rows:
            inputs = images  # every pair has its own, unknown reference: the batch as uploaded
        else:
            inputs = torch.cat([_take(images[:n], ref_rows), _take(images[n:], rows)])
        taps = self.runner.forward(inputs)
        refs.fill("taps", missing, [t[: len(missing)] for t in taps])
        return [t[len(missing) :] for t in taps]


def _take(batch: torch.Tensor, rows: list[int]) -> torch.Tensor:
    """``batch[rows]`` without a copy when ``rows`` is the whole batch in order (and without
    making the host wait for the device otherwise: ``index_on``)."""
    if rows == list(range(batch.shape[0])):
        return batch
    return batch[index_on(rows, batch.device)]  # indexing keeps channels-last; index_select not


def _rows_of(tensors: list[torch.Tensor], rows: list[int], subset: list[int]) -> list[torch.Tensor]:
    """The ``subset`` of ``rows`` from tensors whose rows are ``rows``."""
    if subset == rows:
        return tensors
    position = [rows.index(row) for row in subset]
    return [_take(t, position) for t in tensors]
