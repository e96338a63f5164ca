"""The scorer with every network: mixed batches, forward passes per network, the reference cache's
per-network parts, maps, and bf16 (the backbones under autocast, the heads in fp32)."""

from __future__ import annotations

import itertools
import statistics

import pytest
import torch
from torch import nn

from app.models.vgg import VGGFeatures
from app.scoring import PairRequest, PairScores, ReferenceCache, Scorer
from app.scoring.references import taps_part
from app.vocabulary import ALL_SCORES, ScoreName
from devtools.images import distort, photo, to_tensor
from tests.support.models import cpu_runner

SIDE = 64
NETWORK_SCORES: tuple[ScoreName, ...] = ("lpips", "lpips_vgg", "dists")
EVERY = ALL_SCORES - {"ms_ssim"}  # every score but the one that needs 161 px


@pytest.fixture(scope="module")
def scorer(extractor: VGGFeatures, networks: dict[str, nn.Module]) -> Scorer:
    return Scorer(cpu_runner(extractor, networks=networks))


def pair(
    name: str, kind: str, scores: frozenset[ScoreName] = EVERY, **extra: object
) -> PairRequest:
    image = photo(name, SIDE)
    return PairRequest(to_tensor(image), to_tensor(distort(image, kind)), scores, **extra)  # type: ignore[arg-type]


class Forwards:
    """The runner's forward passes: (network, rows) in order."""

    def __init__(self, scorer: Scorer, monkeypatch: pytest.MonkeyPatch) -> None:
        forward = scorer.runner.forward
        self.calls: list[tuple[str, int]] = []

        def counted(images: torch.Tensor, network: str = "vgg19") -> list[torch.Tensor]:
            self.calls.append((network, int(images.shape[0])))
            return forward(images, network)

        monkeypatch.setattr(scorer.runner, "forward", counted)


@pytest.fixture
def forwards(scorer: Scorer, monkeypatch: pytest.MonkeyPatch) -> Forwards:
    return Forwards(scorer, monkeypatch)


def test_a_mixed_batch_scores_each_pair_as_alone(scorer: Scorer) -> None:
    """Pairs asking for different scores share one batch; each gets what it asked for, equal to
    its scores alone, and nothing else."""
    pairs = [
        pair("astronaut", "jpeg", frozenset({"lpips", "ssim"})),
        pair("coffee", "blur", frozenset({"dists"})),
        pair("chelsea", "noise", EVERY),
        pair("rocket", "colour", frozenset({"vgg", "lpips_vgg"}), map_kind="lpips"),
    ]
    batched = scorer.score(pairs)
    for request, got in zip(pairs, batched, strict=True):
        (alone,) = scorer.score([request])
        for name in ALL_SCORES:
            value, expected = got.value(name), alone.value(name)
            if name not in request.scores:
                assert value is None, name
            elif name == "psnr" or expected is None:
                assert value == expected, name
            else:
                assert value == pytest.approx(expected, rel=1e-5, abs=1e-9), name
    assert batched[3].map is not None and batched[3].map.shape == (SIDE, SIDE)
    assert all(s.map is None for s in batched[:3])


def test_each_network_runs_once_per_batch_for_the_pairs_that_need_it(
    scorer: Scorer, forwards: Forwards
) -> None:
    scorer.score([pair("astronaut", "jpeg", frozenset({"ssim", "mse"}))])
    assert forwards.calls == []
    scorer.score(
        [
            pair("astronaut", "jpeg", frozenset({"lpips"})),
            pair("coffee", "blur", frozenset({"vgg", "lpips_vgg"})),
            pair("chelsea", "noise", frozenset({"dists", "lpips"})),
        ]
    )
    assert sorted(forwards.calls) == [
        ("dists_vgg16", 2), ("lpips_alexnet", 4), ("lpips_vgg16", 2), ("vgg19", 2),
    ]  # fmt: skip


def test_a_map_alone_runs_its_network(scorer: Scorer, forwards: Forwards) -> None:
    (scores,) = scorer.score([pair("coffee", "jpeg", frozenset({"ssim"}), map_kind="lpips_vgg")])
    assert forwards.calls == [("lpips_vgg16", 2)]
    assert scores.lpips_vgg is None and scores.map is not None
    assert float(scores.map.min()) >= 0.0 and float(scores.map.max()) > 0.0


def test_identical_pairs_score_exactly_and_run_nothing(scorer: Scorer, forwards: Forwards) -> None:
    image = to_tensor(photo("chelsea", SIDE))
    (scores,) = scorer.score([PairRequest(image, image.clone(), EVERY, map_kind="lpips")])
    assert forwards.calls == []
    assert (scores.lpips, scores.lpips_vgg, scores.dists) == (0.0, 0.0, 0.0)
    assert scores.map is not None and torch.count_nonzero(scores.map) == 0


def test_the_reference_cache_keeps_each_networks_taps(
    extractor: VGGFeatures, networks: dict[str, nn.Module], monkeypatch: pytest.MonkeyPatch
) -> None:
    scorer = Scorer(cpu_runner(extractor, networks=networks), ReferenceCache(8, 1 << 30))
    forwards = Forwards(scorer, monkeypatch)
    image = photo("astronaut", SIDE)
    reference = to_tensor(image)

    def request(kind: str, scores: set[str]) -> PairScores:
        candidate = to_tensor(distort(image, kind))
        (result,) = scorer.score([PairRequest(reference, candidate, frozenset(scores), "golden")])  # type: ignore[arg-type]
        return result

    first = request("jpeg", {"vgg", "lpips"})
    entry = scorer.cache.get("golden")
    assert entry is not None
    assert entry.taps is not None and entry.get(taps_part("lpips_alexnet")) is not None
    assert entry.get(taps_part("dists_vgg16")) is None
    forwards.calls.clear()
    second = request("blur", {"lpips", "dists"})
    assert forwards.calls == [("lpips_alexnet", 1), ("dists_vgg16", 2)]
    forwards.calls.clear()
    third = request("noise", {"vgg", "lpips", "dists"})
    assert forwards.calls == [("vgg19", 1), ("lpips_alexnet", 1), ("dists_vgg16", 1)]
    assert (first.reference_cached, second.reference_cached, third.reference_cached) == (
        False, False, True,
    )  # fmt: skip
    uncached = Scorer(cpu_runner(extractor, networks=networks)).score(
        [PairRequest(reference, to_tensor(distort(image, "noise")), frozenset({"lpips", "dists"}))]
    )[0]
    assert third.lpips == pytest.approx(uncached.lpips, rel=1e-5)
    assert third.dists == pytest.approx(uncached.dists, rel=1e-5)


def test_without_a_network_its_scores_are_unavailable(extractor: VGGFeatures) -> None:
    scorer = Scorer(cpu_runner(extractor))
    catalog = scorer.catalog
    assert catalog.available == frozenset(
        {"vgg", "style", "ssim", "mse", "psnr", "flip", "ms_ssim"}
    )
    assert "lpips_alexnet" in (catalog["lpips"].unavailable or "")


# -- bf16: the backbones in bf16 under autocast, the heads and statistics in fp32 --------------

PHOTOS = ("astronaut", "chelsea", "coffee", "rocket")
KINDS = ("jpeg", "blur", "noise")


def test_bf16_network_scores_stay_close_and_keep_the_order(
    extractor: VGGFeatures, networks: dict[str, nn.Module]
) -> None:
    pairs = [
        PairRequest(
            to_tensor(photo(name, SIDE)),
            to_tensor(distort(photo(name, SIDE), kind, seed=i, strength=0.5)),
            frozenset(NETWORK_SCORES),
        )
        for i, name in enumerate(PHOTOS)
        for kind in KINDS
    ]
    fp32 = Scorer(cpu_runner(extractor, networks=networks)).score(pairs)
    bf16 = Scorer(cpu_runner(extractor, networks=networks, precision="bf16")).score(pairs)
    for name in NETWORK_SCORES:
        a = [s.value(name) or 0.0 for s in fp32]
        b = [s.value(name) or 0.0 for s in bf16]
        devs = [abs(y - x) / x for x, y in zip(a, b, strict=True)]
        assert statistics.median(devs) <= 0.03, name  # measured ~0.3-1 % (docs/benchmarks.md)
        order = sorted(range(len(a)), key=a.__getitem__)
        swapped = sum(b[i] > b[j] for i, j in itertools.pairwise(order))
        assert swapped <= 2, name


def test_the_warm_up_runs_every_network_its_shapes_allow(
    extractor: VGGFeatures, networks: dict[str, nn.Module]
) -> None:
    """Readiness waits for the warm-up, which runs each network at each warm shape (AlexNet
    skips a shape under its 31 px)."""
    runner = cpu_runner(extractor, networks=networks)
    seen: list[tuple[str, tuple[int, ...]]] = []
    hooks = [
        module.register_forward_hook(
            lambda m, args, out, name=name: seen.append((name, tuple(args[0].shape)))
        )
        for name, module in runner.networks.items()
    ]
    try:
        runner.warm_up([(32, 40), (24, 24)], batch_size=2)
    finally:
        for hook in hooks:
            hook.remove()
    assert sorted(seen) == sorted(
        [(name, (4, 3, 32, 40)) for name in runner.networks]
        + [(name, (4, 3, 24, 24)) for name in runner.networks if name != "lpips_alexnet"]
    )


def test_each_network_runs_in_its_layout_and_vgg16_weights_stay_shared(
    extractor: VGGFeatures, networks: dict[str, nn.Module]
) -> None:
    """On the CPU the LPIPS VGG16 runs in NCHW (faster there, measured), DISTS channels-last
    from its input, and the two still share one copy of VGG16's weights; channels-last off:
    every network in NCHW. The scores do not depend on the layout."""
    runner = cpu_runner(extractor, networks=networks)
    assert runner.formats == {
        "vgg19": torch.channels_last,
        "lpips_alexnet": torch.channels_last,
        "lpips_vgg16": torch.contiguous_format,
        "dists_vgg16": torch.channels_last,
    }
    lpips_vgg, dists_net = runner.networks["lpips_vgg16"], runner.networks["dists_vgg16"]
    shared = {id(p) for p in lpips_vgg.parameters()} & {id(p) for p in dists_net.parameters()}
    assert len(shared) == 26  # VGG16's 13 convolutions, weights and biases
    plain = cpu_runner(extractor, networks=networks, channels_last=False)
    assert set(plain.formats.values()) == {torch.contiguous_format}
    pairs = [pair("coffee", "jpeg", frozenset(NETWORK_SCORES))]
    a, b = Scorer(runner).score(pairs)[0], Scorer(plain).score(pairs)[0]
    for name in NETWORK_SCORES:
        assert a.value(name) == pytest.approx(b.value(name), rel=1e-5), name
