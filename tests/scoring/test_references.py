"""The reference-feature cache: same scores as without it, LRU bounds, counters, model rows."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

import pytest
import torch
from fastapi.testclient import TestClient

from app.config import Settings
from app.main import create_app
from app.models.vgg import VGGFeatures
from app.observability import Metrics
from app.scoring import (
    PairRequest,
    PairScores,
    ReferenceCache,
    ReferenceFeatures,
    Scorer,
    reference_key,
)
from app.vocabulary import DEFAULT_SCORES
from devtools.images import distort, encode, photo, to_tensor
from tests.support.models import cpu_runner

SIDE = 64
KINDS = ("jpeg", "blur", "noise", "colour")
FIELDS = ("vgg", "style", "ssim", "mse", "psnr")
REL = 1e-5
BIG = 1 << 30


def assert_same(a: PairScores, b: PairScores, rel: float = REL) -> None:
    for name in FIELDS:
        assert getattr(a, name) == pytest.approx(getattr(b, name), rel=rel, abs=1e-12), name
    for layers in ("vgg_layers", "style_layers"):
        la, lb = getattr(a, layers), getattr(b, layers)
        assert la is not None
        assert lb is not None
        assert la == pytest.approx(lb, rel=rel, abs=1e-12), layers


def golden_pairs(name: str = "astronaut", kinds: tuple[str, ...] = KINDS) -> list[PairRequest]:
    """Distorted candidates of one real photograph, keyed as the service keys them."""
    image = photo(name, SIDE)
    reference = to_tensor(image)
    key = reference_key(reference, f"max_side=1024|{SIDE}")
    return [
        PairRequest(reference, to_tensor(distort(image, kind, seed=i)), reference_key=key)
        for i, kind in enumerate(kinds)
    ]


def cache_counts(metrics: Metrics) -> tuple[float, float]:
    hits = metrics.registry.get_sample_value("simscore_reference_cache_hits_total")
    misses = metrics.registry.get_sample_value("simscore_reference_cache_misses_total")
    return hits or 0.0, misses or 0.0


@contextmanager
def forward_rows(extractor: VGGFeatures) -> Iterator[list[int]]:
    """Rows of every VGG19 forward while the block runs."""
    rows: list[int] = []
    handle = extractor.register_forward_hook(lambda m, args, out: rows.append(args[0].shape[0]))
    try:
        yield rows
    finally:
        handle.remove()


def features(nbytes_each: int = 4096) -> ReferenceFeatures:
    """A small entry of a known size: one float32 tap of ``nbytes_each`` bytes."""
    return ReferenceFeatures(taps=(torch.zeros(nbytes_each // 4),))


# -- equality ----------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["astronaut", "chelsea"])
def test_cached_scores_equal_uncached_scores(extractor: VGGFeatures, name: str) -> None:
    pairs = golden_pairs(name)
    on = Scorer(cpu_runner(extractor), ReferenceCache(8, BIG))
    off = Scorer(cpu_runner(extractor), ReferenceCache(0, BIG))
    expected = [off.score([p])[0] for p in pairs]
    first = on.score(pairs[:1])[0]  # a miss: stores the reference
    later = [on.score([p])[0] for p in pairs[1:]]  # hits, one by one
    batched = on.score(pairs)  # a hit inside a full batch
    assert not first.reference_cached
    assert all(s.reference_cached for s in [*later, *batched])
    for got, want in zip([first, *later], expected, strict=True):
        assert_same(got, want)
    for got, want in zip(batched, expected, strict=True):
        assert_same(got, want)


def test_batch_mixing_cached_and_uncached_references(extractor: VGGFeatures) -> None:
    golden, other = golden_pairs("astronaut"), golden_pairs("rocket")
    on = Scorer(cpu_runner(extractor), ReferenceCache(8, BIG))
    off = Scorer(cpu_runner(extractor), ReferenceCache(0, BIG))
    on.score(golden[:1])
    mixed = [golden[1], other[0], golden[2], other[1]]
    got = on.score(mixed)
    assert [s.reference_cached for s in got] == [True, False, True, False]
    for scores, p in zip(got, mixed, strict=True):
        assert_same(scores, off.score([p])[0])


def test_metric_subset_then_full_request(extractor: VGGFeatures) -> None:
    """An entry stored for SSIM alone lacks VGG features: the next full request runs the
    model on the reference (not reported as cached) and completes the entry."""
    pairs = golden_pairs()
    on = Scorer(cpu_runner(extractor), ReferenceCache(8, BIG))
    off = Scorer(cpu_runner(extractor), ReferenceCache(0, BIG))
    p = pairs[0]
    ssim_only = on.score(
        [PairRequest(p.reference, p.candidate, frozenset({"ssim"}), p.reference_key)]
    )
    assert ssim_only[0].vgg is None
    with forward_rows(extractor) as rows:
        second = on.score([pairs[1]])[0]
        third = on.score([pairs[2]])[0]
    assert rows == [2, 1]
    assert not second.reference_cached
    assert third.reference_cached
    assert_same(second, off.score([pairs[1]])[0])
    assert_same(third, off.score([pairs[2]])[0])


# -- what the model runs on --------------------------------------------------------------------


def test_hit_runs_the_model_on_candidates_only(extractor: VGGFeatures) -> None:
    pairs = golden_pairs()
    scorer = Scorer(cpu_runner(extractor), ReferenceCache(8, BIG))
    with forward_rows(extractor) as rows:
        scorer.score(pairs[:3])  # miss: the reference once, three candidates
        scorer.score(pairs[3:])  # hit
        scorer.score(pairs[:2])  # hit
    assert rows == [1 + 3, 1, 2]


def test_within_batch_dedupe_without_cache(extractor: VGGFeatures) -> None:
    a, b = golden_pairs("astronaut"), golden_pairs("coffee")
    scorer = Scorer(cpu_runner(extractor), ReferenceCache(0, BIG))
    batch = [a[0], b[0], a[1], b[1], a[2]]
    with forward_rows(extractor) as rows:
        got = scorer.score(batch)
        again = scorer.score(batch)
    assert rows == [2 + 5, 2 + 5]  # two references, five candidates; nothing carried over
    unkeyed = [PairRequest(p.reference, p.candidate) for p in batch]
    for scores, p in zip(got, unkeyed, strict=True):
        assert not scores.reference_cached
        assert_same(scores, scorer.score([p])[0])
    for x, y in zip(got, again, strict=True):
        assert_same(x, y, rel=0)


def test_cache_off_never_stores(extractor: VGGFeatures) -> None:
    metrics = Metrics()
    cache = ReferenceCache(0, BIG, metrics)
    scorer = Scorer(cpu_runner(extractor), cache)
    pairs = golden_pairs()
    for p in pairs:
        assert not scorer.score([p])[0].reference_cached
    assert not cache.enabled
    assert len(cache) == 0
    assert cache.nbytes == 0
    assert cache_counts(metrics) == (0.0, 0.0)
    cache.put("k", features())
    assert len(cache) == 0
    assert cache.get("k") is None


def test_unkeyed_pairs_are_never_cached(extractor: VGGFeatures) -> None:
    cache = ReferenceCache(8, BIG)
    scorer = Scorer(cpu_runner(extractor), cache)
    p = golden_pairs()[0]
    scorer.score([PairRequest(p.reference, p.candidate)])
    assert len(cache) == 0


def test_release_memory_empties_the_cache(extractor: VGGFeatures) -> None:
    cache = ReferenceCache(8, BIG)
    scorer = Scorer(cpu_runner(extractor), cache)
    scorer.score(golden_pairs()[:1])
    assert len(cache) == 1
    assert cache.nbytes > 0
    scorer.release_memory()
    assert len(cache) == 0
    assert cache.nbytes == 0


def test_cached_entry_holds_copies_not_batch_views(extractor: VGGFeatures) -> None:
    """A cached tap must own its storage, or it keeps a whole batch's activations alive."""
    cache = ReferenceCache(8, BIG)
    scorer = Scorer(cpu_runner(extractor), cache)
    pairs = golden_pairs()
    scorer.score(pairs)
    key = pairs[0].reference_key
    assert key is not None
    entry = cache.get(key)
    assert entry is not None
    assert entry.taps is not None
    assert entry.grams is not None
    assert entry.moments is not None
    for tap in entry.taps:
        assert tap.shape[0] == 1
        assert tap.untyped_storage().nbytes() == tap.numel() * tap.element_size()
    moments_bytes = entry.moments[0].numel() * 4
    expected = sum(t.numel() * 4 for t in (*entry.taps, *entry.grams)) + moments_bytes
    assert entry.nbytes == expected == cache.nbytes


# -- the LRU -----------------------------------------------------------------------------------


def test_lru_evicts_least_recently_used_by_entries() -> None:
    cache = ReferenceCache(2, BIG)
    cache.put("a", features())
    cache.put("b", features())
    assert cache.get("a") is not None  # "a" is now the most recent
    cache.put("c", features())
    assert cache.get("b") is None
    assert cache.get("a") is not None
    assert cache.get("c") is not None
    assert len(cache) == 2


def test_lru_evicts_by_bytes() -> None:
    metrics = Metrics()
    cache = ReferenceCache(100, 10_000, metrics)
    for key in ("a", "b"):
        cache.put(key, features(4096))
    assert cache.nbytes == 8192
    cache.put("c", features(4096))  # 12288 > 10000: "a" goes
    assert cache.get("a") is None
    assert len(cache) == 2
    assert cache.nbytes == 8192
    assert metrics.registry.get_sample_value("simscore_reference_cache_bytes") == 8192
    cache.put("huge", features(20_000))  # larger than the cap: never stored, nothing evicted
    assert cache.get("huge") is None
    assert len(cache) == 2


def test_put_replaces_an_entry_and_its_bytes() -> None:
    cache = ReferenceCache(4, BIG)
    cache.put("a", features(4096))
    cache.put("a", features(8192))
    assert len(cache) == 1
    assert cache.nbytes == 8192


def test_hit_and_miss_counters(extractor: VGGFeatures) -> None:
    metrics = Metrics()
    scorer = Scorer(cpu_runner(extractor), ReferenceCache(8, BIG, metrics))
    pairs = golden_pairs()
    scorer.score(pairs[:2])  # one lookup per distinct reference in a batch: a miss
    assert cache_counts(metrics) == (0.0, 1.0)
    scorer.score(pairs[2:])
    scorer.score(pairs[:1])
    assert cache_counts(metrics) == (2.0, 1.0)


# -- the key -----------------------------------------------------------------------------------


def test_reference_key_covers_content_shape_and_preprocessing() -> None:
    image = to_tensor(photo("astronaut", 32))
    key = reference_key(image, "max_side=1024")
    assert key == reference_key(image.clone(), "max_side=1024")
    assert key != reference_key(image, "max_side=512")
    changed = image.clone()
    changed[0, 0, 0] = 1 - changed[0, 0, 0]
    assert key != reference_key(changed, "max_side=1024")
    assert key != reference_key(image.reshape(3, 16, 64), "max_side=1024")
    assert key != reference_key(image.double(), "max_side=1024")


# -- through the service -----------------------------------------------------------------------


def _compare(client: TestClient, reference: bytes, candidate: bytes) -> dict[str, object]:
    response = client.post(
        "/compare",
        files={"reference": ("r.png", reference, "image/png"), "candidate": ("c.png", candidate)},
    )
    assert response.status_code == 200, response.text
    body: dict[str, object] = response.json()
    return body


def test_service_cache_on_and_off(make_settings: Callable[..., Settings]) -> None:
    """Through HTTP: the second upload of a golden image is a hit, scores do not change, and
    ``SIMSCORE_REFERENCE_CACHE_SIZE=0`` turns it off."""
    image = photo("chelsea", SIDE)
    reference = encode(image)
    candidates = [encode(distort(image, kind)) for kind in KINDS[:3]]
    bodies: dict[int, list[dict[str, object]]] = {}
    for size in (8, 0):
        with TestClient(create_app(make_settings(reference_cache_size=size))) as client:
            bodies[size] = [_compare(client, reference, c) for c in candidates]
            text = client.get("/metrics").text
        hits = 2 if size else 0
        misses = 1 if size else 0
        assert f"simscore_reference_cache_hits_total {hits}.0" in text
        assert f"simscore_reference_cache_misses_total {misses}.0" in text
    assert [b["reference_cached"] for b in bodies[8]] == [False, True, True]
    assert [b["reference_cached"] for b in bodies[0]] == [False, False, False]
    for on, off in zip(bodies[8], bodies[0], strict=True):
        on_scores, off_scores = on["scores"], off["scores"]
        assert isinstance(on_scores, dict)
        assert isinstance(off_scores, dict)
        for name in FIELDS:
            assert on_scores[name] == pytest.approx(off_scores[name], rel=REL, abs=1e-12), name


def test_all_metrics_constant_matches_fields() -> None:
    assert frozenset(FIELDS) == DEFAULT_SCORES  # what a request that names no scores gets
