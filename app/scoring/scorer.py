"""The scoring engine: per batch, one forward pass per network its pairs need, then every
requested score per pair.

``Scorer.score`` takes pairs of one tensor shape and returns one ``PairScores`` each. The batch's
images are uploaded once; the references and candidates of the pairs that need a network go
through it together (VGG19 for vgg and style, the others in ``app.scoring.network_scores``); a
network no pair needs does not run (``scores=ssim,mse`` runs none). A reference that several
pairs share, or that the reference cache holds, is run once or not at all (``BatchReferences``).
Every score depends only on its own pair, never on the rest of the batch, and a pair of equal
images gets the exact scores of equal images, by definition, on every CPU and in every batch.
The scores run in IEEE fp32 in every precision mode (TF32 off; TF32 or bf16, when asked for,
belong to the networks' forward passes alone). What this scorer can compute is its ``catalog``
(a network score whose network or head it lacks is unavailable).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import torch

from app.models import registry
from app.scores import (
    gram_matrices,
    mse,
    psnr,
    reference_moments,
    ssim,
    style_distance,
    vgg_distance,
)
from app.scoring.catalog import Catalog
from app.scoring.device import fp32_math
from app.scoring.image_scores import score_flip, score_ms_ssim
from app.scoring.network_scores import NETWORK_SCORES, Head, NetworkScores, load_heads
from app.scoring.references import BatchReferences, ReferenceCache
from app.scoring.regions import Regions
from app.scoring.runner import VGG19, ModelRunner
from app.scoring.sheet import ScoreSheet
from app.scoring.taps import TimingObserver, Timings, candidate_taps, rows_of, take
from app.scoring.types import PairRequest, PairScores, identical_scores
from app.vocabulary import FEATURE_SCORES, PIXEL_SCORES, ScoreName


class Scorer:
    """Scores batches of pairs with one model runner and one reference cache.

    ``heads``: the learned heads by score, on the runner's device (default: loaded here for
    the networks the runner has). ``unavailable``: per backbone not loaded, why (for the
    catalog). ``observer``: where each score's and each network's time per batch goes."""

    def __init__(
        self,
        runner: ModelRunner,
        cache: ReferenceCache | None = None,
        *,
        heads: Mapping[ScoreName, Head] | None = None,
        unavailable: Mapping[str, str] | None = None,
        observer: TimingObserver | None = None,
    ) -> None:
        self.runner = runner
        self.cache = cache if cache is not None else ReferenceCache(0, 0)
        if heads is None:
            heads = load_heads(runner.networks, runner.device)
        self.heads = dict(heads)
        self.timings = Timings(observer)
        self.network_scores = NetworkScores(runner, self.heads, self.timings)
        self.catalog = Catalog(self._unavailable(unavailable or {}))

    def _unavailable(self, given: Mapping[str, str]) -> dict[str, str]:
        """Per backbone of a network score this scorer cannot compute, why (``given``, else:
        its network or its head is not here)."""
        reasons = dict(given)
        for name, entry in NETWORK_SCORES.items():
            if name not in self.heads or entry.network not in self.runner.networks:
                backbone = registry.network_of(name)[0].name
                reasons.setdefault(backbone, f"its network ({entry.network}) is not loaded")
        return reasons

    def score(self, pairs: Sequence[PairRequest]) -> list[PairScores]:
        """Scores of pairs of one shape (``launch`` and wait for its results)."""
        return self.launch(pairs)()

    def launch(self, pairs: Sequence[PairRequest]) -> Callable[[], list[PairScores]]:
        """Start scoring pairs of one shape; returns what waits for their scores.

        Equal images get the scores of equal images by definition; the others, their taps (per
        network they need, one forward pass over the references not yet known and the
        candidates), then each requested score, then one result per pair, read from the device
        in one transfer. On a GPU the work is queued on the device when this returns, and the
        host is free to prepare the next batch until the scores are waited for."""
        if len({p.shape for p in pairs}) > 1:
            raise ValueError(f"a batch must hold one tensor shape, got {[p.shape for p in pairs]}")
        with fp32_math(tf32=False):  # the runner's forward passes alone may set TF32
            equal = [p.identical for p in pairs]
            distinct = [p for p, same in zip(pairs, equal, strict=True) if not same]
            read = self._score_distinct(distinct) if distinct else list

        def scores() -> list[PairScores]:
            scored = iter(read())
            return [
                identical_scores(p) if same else next(scored)
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
                with self.timings.score("mse"):
                    errors = mse(take(x, rows), take(y, rows), mask=mask)
                sheet.put("mse", rows, errors)
                with self.timings.score("psnr"):
                    sheet.put("psnr", rows, psnr(errors))
            if rows := sheet.rows_wanting({"ssim"}):
                self._ssim(sheet, refs, x, y, regions.split(rows))
            if rows := sheet.rows_wanting(FEATURE_SCORES):
                self._feature_scores(sheet, refs, images, rows, regions)
            self.network_scores.score(sheet, refs, images, regions)
            score_flip(sheet, list(pairs), refs, (x, y), regions, self.timings)
            score_ms_ssim(sheet, refs, (x, y), regions, self.timings)
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
            with self.timings.score("ssim"):
                refs.derive(
                    "moments", rows, lambda new: [reference_moments(take(x, refs.pixel_rows(new)))]
                )
                moments = refs.gather("moments", rows)[0]
                values = ssim(take(x, rows), take(y, rows), x_moments=moments, mask=mask)
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
        taps = candidate_taps(self.runner, images, refs, rows, VGG19, self.timings)
        for part, mask in regions.split(sheet.rows_wanting({"vgg"})):
            fx, fy = refs.gather("taps", part), rows_of(taps, rows, part)
            with self.timings.score("vgg"):
                values = vgg_distance(fx, fy, mask=mask)
            sheet.put("vgg", part, *values)
        for part, mask in regions.split(sheet.rows_wanting({"style"})):
            fy = rows_of(taps, rows, part)
            with self.timings.score("style"):
                if mask is None:
                    refs.derive("grams", part, lambda new: gram_matrices(refs.of("taps", new)))
                    gx = refs.gather("grams", part)
                else:
                    gx = gram_matrices(refs.gather("taps", part), mask=mask)
                values = style_distance(gx, gram_matrices(fy, mask=mask))
            sheet.put("style", part, *values)
