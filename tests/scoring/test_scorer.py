"""The engine: per-pair scores, batch invariance, metric subsets, shared references."""

from __future__ import annotations

import gc
import math
import weakref
from collections.abc import Callable
from typing import Any

import pytest
import torch

from app.models.vgg import VGGFeatures
from app.scoring import PairRequest, PairScores, ReferenceCache, Scorer
from devtools.images import distort, photo, to_tensor
from tests.support.models import cpu_runner

FIELDS = ("vgg", "style", "ssim", "mse", "psnr")


def pair(name: str, kind: str, side: int = 64, key: str | None = None) -> PairRequest:
    reference = photo(name, side)
    return PairRequest(to_tensor(reference), to_tensor(distort(reference, kind)), reference_key=key)


def assert_same(a: PairScores, b: PairScores, rel: float = 1e-5) -> None:
    for field in FIELDS:
        va, vb = getattr(a, field), getattr(b, field)
        assert va == pytest.approx(vb, rel=rel, abs=1e-12), field
    for layers in ("vgg_layers", "style_layers"):
        la, lb = getattr(a, layers), getattr(b, layers)
        assert la is not None and lb is not None
        for tap in la:
            assert la[tap] == pytest.approx(lb[tap], rel=rel, abs=1e-12), (layers, tap)


def test_batch_invariance(scorer: Scorer) -> None:
    target = pair("astronaut", "jpeg")
    others = [pair("chelsea", "noise"), pair("coffee", "blur"), pair("camera", "colour")]
    alone = scorer.score([target])[0]
    for position in range(4):
        batch = [*others[:position], target, *others[position:]]
        assert_same(scorer.score(batch)[position], alone)


EXACT = {"vgg": 0.0, "style": 0.0, "ssim": 1.0, "mse": 0.0}


def assert_identical(scores: PairScores) -> None:
    """Exactly the scores of equal images: by design, not within a tolerance."""
    for name, value in EXACT.items():
        assert getattr(scores, name) == value, name
    assert scores.psnr is not None and math.isinf(scores.psnr)
    assert scores.vgg_layers == dict.fromkeys(scores.vgg_layers or {}, 0.0)
    assert scores.style_layers == dict.fromkeys(scores.style_layers or {}, 0.0)


def test_identical_images_score_exactly(scorer: Scorer) -> None:
    image = to_tensor(photo("coffee", 64))
    (scores,) = scorer.score([PairRequest(image, image.clone())])
    assert_identical(scores)


@pytest.mark.parametrize("position", [0, 1, 3])
def test_identical_pair_is_exact_in_any_batch(extractor: VGGFeatures, position: int) -> None:
    """In a batch with other pairs, sharing their reference, with the reference cached or not."""
    image = photo("astronaut", 64)
    golden = to_tensor(image)
    others = [
        PairRequest(golden, to_tensor(distort(image, kind)), reference_key="golden")
        for kind in ("jpeg", "blur", "noise")
    ]
    same = PairRequest(golden, golden.clone(), reference_key="golden")
    batch = [*others[:position], same, *others[position:]]
    scorer = Scorer(cpu_runner(extractor), ReferenceCache(4, 1 << 30))
    for _ in range(2):  # the second time the reference comes from the cache
        scores = scorer.score(batch)
        assert_identical(scores[position])
        assert all(s.vgg is not None and s.vgg > 0 for i, s in enumerate(scores) if i != position)


def test_identical_pair_asks_only_what_it_asked(scorer: Scorer) -> None:
    image = to_tensor(photo("chelsea", 48))
    (scores,) = scorer.score([PairRequest(image, image.clone(), scores=frozenset({"ssim"}))])
    assert scores.ssim == 1.0
    assert scores.vgg is None and scores.mse is None and scores.psnr is None
    assert scores.vgg_layers is None


def test_only_what_is_asked_is_computed(scorer: Scorer, monkeypatch: pytest.MonkeyPatch) -> None:
    """A vgg request computes no Gram matrix and no SSIM; a style request no L1 distance."""
    import app.scoring.scorer as engine

    calls: list[str] = []

    def counted(name: str, function: Callable[..., Any]) -> Callable[..., Any]:
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            calls.append(name)
            return function(*args, **kwargs)

        return wrapper

    for name in ("gram_matrices", "vgg_distance", "style_distance", "ssim", "mse"):
        monkeypatch.setattr(engine, name, counted(name, getattr(engine, name)))
    p = pair("coffee", "noise")
    scorer.score([PairRequest(p.reference, p.candidate, scores=frozenset({"vgg"}))])
    assert calls == ["vgg_distance"]
    calls.clear()
    scorer.score([PairRequest(p.reference, p.candidate, scores=frozenset({"style"}))])
    assert sorted(set(calls)) == ["gram_matrices", "style_distance"]
    calls.clear()
    scorer.score([PairRequest(p.reference, p.candidate, scores=frozenset({"psnr"}))])
    assert calls == ["mse"]


def test_metric_subset_leaves_others_empty(scorer: Scorer) -> None:
    full = scorer.score([pair("chelsea", "blur")])[0]
    p = pair("chelsea", "blur")
    only = PairRequest(p.reference, p.candidate, scores=frozenset({"ssim", "psnr"}))
    (subset,) = scorer.score([only])
    assert subset.vgg is None and subset.style is None and subset.mse is None
    assert subset.vgg_layers is None and subset.style_layers is None
    assert subset.ssim == pytest.approx(full.ssim, rel=1e-6)
    assert subset.psnr == pytest.approx(full.psnr, rel=1e-6)


def test_mixed_metric_sets_in_one_batch(scorer: Scorer) -> None:
    a, b = pair("astronaut", "noise"), pair("coffee", "jpeg")
    b_vgg = PairRequest(b.reference, b.candidate, scores=frozenset({"vgg"}))
    out = scorer.score([a, b_vgg])
    assert_same(out[0], scorer.score([a])[0])
    assert out[1].vgg == pytest.approx(scorer.score([b])[0].vgg, rel=1e-5)
    assert out[1].ssim is None and out[1].style is None


def test_shared_reference_is_run_once_per_batch(extractor: VGGFeatures) -> None:
    rows: list[int] = []
    handle = extractor.register_forward_hook(lambda m, args, out: rows.append(args[0].shape[0]))
    try:
        scorer = Scorer(cpu_runner(extractor))
        reference = photo("astronaut", 64)
        pairs = [
            PairRequest(
                to_tensor(reference), to_tensor(distort(reference, kind)), reference_key="golden"
            )
            for kind in ("jpeg", "blur", "noise")
        ]
        shared = scorer.score(pairs)
        assert rows == [1 + 3]  # one reference and three candidates
        for p, s in zip(pairs, shared, strict=True):
            assert_same(s, scorer.score([PairRequest(p.reference, p.candidate)])[0])
    finally:
        handle.remove()


def test_a_batch_started_before_the_last_is_collected_scores_alike(
    extractor: VGGFeatures,
) -> None:
    """The order overlap brings on a GPU (start the next batch, then collect the last): each
    batch gets its own scores, a reference the first batch cached included."""
    golden = photo("astronaut", 64)

    def shared(kind: str) -> PairRequest:
        return PairRequest(to_tensor(golden), to_tensor(distort(golden, kind)), reference_key="g")

    first = [shared("jpeg"), pair("chelsea", "noise")]
    second = [shared("blur"), pair("coffee", "colour"), shared("noise")]
    alone = Scorer(cpu_runner(extractor))
    expected = [alone.score([p])[0] for p in (*first, *second)]
    scorer = Scorer(cpu_runner(extractor), ReferenceCache(8, 1 << 30))
    collect_first = scorer.launch(first)
    collect_second = scorer.launch(second)
    scores = [*collect_first(), *collect_second()]
    for got, want in zip(scores, expected, strict=True):
        assert_same(got, want)
    assert [s.reference_cached for s in scores] == [False, False, True, False, True]


def test_a_launched_batch_keeps_nothing_of_its_forward_pass(
    extractor: VGGFeatures, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Between launch and collect (with overlap, while the next batch runs its forward pass)
    only the scores are held: the taps and Gram matrices of the batch are already freed."""
    scorer = Scorer(cpu_runner(extractor))
    taps: list[weakref.ref[torch.UntypedStorage]] = []
    forward = scorer.runner.forward

    def watched(images: torch.Tensor, network: str = "vgg19") -> list[torch.Tensor]:
        outputs = forward(images, network)
        taps.extend(weakref.ref(t.untyped_storage()) for t in outputs)  # views keep it alive
        return outputs

    monkeypatch.setattr(scorer.runner, "forward", watched)
    golden = photo("coffee", 64)
    shared = PairRequest(to_tensor(golden), to_tensor(distort(golden, "blur")), reference_key="g")
    collect = scorer.launch([pair("astronaut", "jpeg"), shared, shared])
    gc.collect()
    assert len(taps) == 5 and all(ref() is None for ref in taps)
    assert all(s.vgg is not None and s.vgg > 0 for s in collect())


def test_batch_of_mixed_shapes_is_refused(scorer: Scorer) -> None:
    with pytest.raises(ValueError, match="one tensor shape"):
        scorer.score([pair("astronaut", "jpeg", 64), pair("astronaut", "jpeg", 48)])


def test_pair_request_validates() -> None:
    with pytest.raises(ValueError, match="one shape"):
        PairRequest(torch.rand(3, 20, 20), torch.rand(3, 20, 21))
    with pytest.raises(ValueError, match="subset"):
        PairRequest(torch.rand(3, 20, 20), torch.rand(3, 20, 20), scores=frozenset({"blur"}))  # type: ignore[arg-type]


def test_channels_last_and_contiguous_agree(extractor: VGGFeatures) -> None:
    p = pair("chelsea", "colour")
    a = Scorer(cpu_runner(extractor, channels_last=True)).score([p])[0]
    b = Scorer(cpu_runner(extractor, channels_last=False)).score([p])[0]
    assert_same(a, b, rel=1e-4)


def test_warm_up_runs_full_batches(extractor: VGGFeatures) -> None:
    rows: list[tuple[int, ...]] = []
    handle = extractor.register_forward_hook(lambda m, args, out: rows.append(args[0].shape))
    try:
        cpu_runner(extractor).warm_up([(32, 32), (48, 48)], batch_size=3)
    finally:
        handle.remove()
    assert [r[0] for r in rows] == [6, 6]
    assert [r[-1] for r in rows] == [32, 48]


def test_max_wait_default_depends_on_the_device() -> None:
    from app.config import Settings
    from app.pipeline import default_max_wait_ms

    auto = Settings(_env_file=None, max_wait_ms=None)
    assert default_max_wait_ms(auto, torch.device("cpu")) == 20.0
    assert default_max_wait_ms(auto, torch.device("cuda")) == 2.0
    fixed = Settings(_env_file=None, max_wait_ms=7)
    assert default_max_wait_ms(fixed, torch.device("cpu")) == 7.0
