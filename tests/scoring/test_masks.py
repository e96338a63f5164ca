"""Masked pairs in the scorer: all-ones equals no mask, batch invariance with and without masks,
the reference cache, and what is cached."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from app.models.vgg import VGGFeatures
from app.scores import composite
from app.scoring import PairRequest, PairScores, ReferenceCache, Scorer
from devtools.images import distort, photo, to_tensor
from tests.support.models import cpu_runner

FIELDS = ("vgg", "style", "ssim", "mse", "psnr")
SIDE = 64


def region(kind: str) -> torch.Tensor:
    inside = np.ones((SIDE, SIDE), bool)
    if kind == "corner":
        inside[:20, :24] = False
    elif kind == "centre":
        inside[:] = False
        inside[16:48, 12:52] = True
    return torch.from_numpy(inside)[None]


def pair(
    name: str, kind: str, mask: torch.Tensor | None = None, key: str | None = None
) -> PairRequest:
    image = photo(name, SIDE)
    x, y = to_tensor(image), to_tensor(distort(image, kind))
    y = y if mask is None else composite(x, y, mask)
    return PairRequest(x, y, reference_key=key, mask=mask)


def assert_close(a: PairScores, b: PairScores, rel: float) -> None:
    for name in FIELDS:
        assert getattr(a, name) == pytest.approx(getattr(b, name), rel=rel, abs=1e-12), name
    assert a.vgg_layers == pytest.approx(b.vgg_layers, rel=rel, abs=1e-12)
    assert a.style_layers == pytest.approx(b.style_layers, rel=rel, abs=1e-12)


def test_an_all_ones_mask_scores_as_no_mask(scorer: Scorer) -> None:
    for kind in ("jpeg", "noise"):
        (masked,) = scorer.score([pair("chelsea", kind, region("all"))])
        (plain,) = scorer.score([pair("chelsea", kind)])
        assert_close(masked, plain, rel=1e-6)


def test_masked_scores_do_not_depend_on_the_batch(scorer: Scorer) -> None:
    target = pair("astronaut", "jpeg", region("centre"))
    alone = scorer.score([target])[0]
    others = [
        pair("coffee", "blur"),
        pair("chelsea", "noise", region("corner")),
        pair("rocket", "colour"),
    ]
    for position in range(len(others) + 1):
        batch = [*others[:position], target, *others[position:]]
        assert_close(scorer.score(batch)[position], alone, rel=1e-5)
    plain = scorer.score([pair("astronaut", "jpeg")])[0]
    assert alone.vgg != pytest.approx(plain.vgg, rel=1e-3)  # the mask did change the score


def test_a_cached_reference_serves_masked_pairs_without_caching_their_grams(
    extractor: VGGFeatures,
) -> None:
    cache = ReferenceCache(8, 1 << 30)
    cached = Scorer(cpu_runner(extractor), cache)
    fresh = Scorer(cpu_runner(extractor))
    mask = region("centre")
    first = pair("coffee", "jpeg", key="golden")
    masked = pair("coffee", "noise", mask, key="golden")
    cached.score([first])  # stores the reference's taps and (unmasked) Gram matrices
    entry = cache.get("golden")
    assert entry is not None and entry.grams is not None
    grams_before = [g.clone() for g in entry.grams]
    (got,) = cached.score([masked])
    assert got.reference_cached
    (expected,) = fresh.score([PairRequest(masked.reference, masked.candidate, mask=mask)])
    assert_close(got, expected, rel=1e-5)
    after = cache.get("golden")
    assert after is not None and after.grams is not None
    for before, now in zip(grams_before, after.grams, strict=True):
        assert torch.equal(before, now)


def test_a_candidate_changed_only_outside_the_mask_is_identical(scorer: Scorer) -> None:
    image = photo("astronaut", SIDE)
    x = to_tensor(image)
    changed = image.copy()
    changed[:20, :24] = 255 - changed[:20, :24]  # the ignored corner
    mask = region("corner")
    y = composite(x, to_tensor(changed), mask)
    (scores,) = scorer.score([PairRequest(x, y, mask=mask)])
    assert (scores.vgg, scores.style, scores.ssim, scores.mse) == (0.0, 0.0, 1.0, 0.0)
    assert scores.psnr == float("inf")
