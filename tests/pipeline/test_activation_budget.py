"""The activation budget (``SIMSCORE_MAX_BATCH_PIXELS``): a forward pass takes at most that many
image pixels (rows x height x width), large images go in smaller batches, a pair over it on its
own goes alone, and no score depends on how the budget split the batches. Small sizes: the
rows of every forward pass are counted, not their memory (that is ``bench/activations.py``)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import torch

from app.config import Settings
from app.pipeline.queue import pair_pixels
from app.scoring import ModelRunner, PairRequest
from app.scoring.activations import BYTES_PER_PIXEL, CPU_BATCH_PIXELS, batch_pixels
from app.scoring.runner import VGG19
from devtools.http import batch_files
from devtools.images import distort, encode, photo
from devtools.servers import queue_of, running

SIDE = 64
PAIR = 2 * SIDE * SIDE  # a pair's share: its reference's rows and its candidate's


def candidates(count: int) -> list[bytes]:
    reference = photo("astronaut", SIDE)
    kinds = ("jpeg", "blur", "noise", "colour")
    return [encode(distort(reference, kinds[i % 4], strength=1 + i // 4)) for i in range(count)]


class RowCounter:
    """Records the rows and pixels of every forward pass of the pipeline's runner."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, runner: ModelRunner) -> None:
        self.passes: list[tuple[int, int]] = []  # (rows, pixels)
        real = runner.forward

        def forward(images: torch.Tensor, network: str = VGG19) -> list[torch.Tensor]:
            rows, _, height, width = images.shape
            self.passes.append((int(rows), int(rows * height * width)))
            return real(images, network)

        monkeypatch.setattr(runner, "forward", forward)


async def scored_batch(
    settings: Settings, monkeypatch: pytest.MonkeyPatch, count: int
) -> tuple[list[dict[str, Any]], list[int], RowCounter]:
    reference = encode(photo("astronaut", SIDE))
    async with running(settings) as (app, client):
        counter = RowCounter(monkeypatch, queue_of(app).scorer.runner)
        response = await client.post(
            "/compare/batch",
            files=batch_files(reference, candidates(count)),
            data={"metrics": "vgg,style,mse"},
        )
    assert response.status_code == 200, response.text
    results = response.json()["results"]
    return [r["scores"] for r in results], [r["timing_ms"]["batch_size"] for r in results], counter


async def test_batches_are_split_by_the_pixel_budget(
    make_settings: Callable[..., Settings], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Room for three pairs of 64 px per pass: 10 candidates go in batches of at most 3, every
    pass within the budget (the shared reference once, then from the cache)."""
    budget = 3 * PAIR
    settings = make_settings(max_batch_pixels=budget, max_batch_size=8, max_wait_ms=200)
    scores, sizes, counter = await scored_batch(settings, monkeypatch, 10)
    assert max(sizes) == 3
    assert all(pixels <= budget for _, pixels in counter.passes), counter.passes
    assert sum(rows for rows, _ in counter.passes) == 10 + 1  # ten candidates, one reference
    unbounded, one_batch, _ = await scored_batch(
        make_settings(max_batch_size=16, max_wait_ms=200), monkeypatch, 10
    )
    assert one_batch == [10] * 10
    for split, whole in zip(scores, unbounded, strict=True):
        for name in ("vgg", "style", "mse"):
            assert split[name] == pytest.approx(whole[name], rel=1e-5)


async def test_a_pair_over_the_budget_is_scored_alone(
    make_settings: Callable[..., Settings], monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = make_settings(max_batch_pixels=PAIR // 2, max_batch_size=8, max_wait_ms=200)
    scores, sizes, counter = await scored_batch(settings, monkeypatch, 4)
    assert sizes == [1, 1, 1, 1]
    assert [rows for rows, _ in counter.passes] == [2, 1, 1, 1]  # the reference, then cached
    assert all(s["vgg"] > 0 for s in scores)


def test_a_pair_counts_its_pixels_once_per_network_it_needs() -> None:
    """Each network's reference taps stay until the batch is scored: a pair that needs VGG19,
    AlexNet and VGG16 (two networks on it) costs four times one that needs VGG19 alone."""
    image = torch.rand(3, SIDE, SIDE)

    def cost(*scores: str) -> int:
        return pair_pixels(PairRequest(image, image.clone(), frozenset(scores)))  # type: ignore[arg-type]

    assert cost("ssim", "mse") == cost("vgg", "style") == PAIR
    assert cost("vgg", "lpips") == 2 * PAIR
    assert cost("vgg", "lpips", "lpips_vgg", "dists") == 4 * PAIR
    with_map = PairRequest(image, image.clone(), frozenset({"vgg"}), map_kind="lpips_vgg")
    assert pair_pixels(with_map) == 2 * PAIR  # the map's network runs too


def test_the_default_budget() -> None:
    cpu = torch.device("cpu")
    assert batch_pixels(None, cpu, "fp32") == CPU_BATCH_PIXELS == 2 * 1024 * 1024
    assert batch_pixels(123_456, cpu, "fp32") == 123_456


def test_the_cuda_default_is_derived_from_the_device_memory(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """(No GPU here: the device's properties are stood in for; the rule is what is checked.)"""

    class Properties:
        total_memory = 80 * 2**30

    monkeypatch.setattr(torch.cuda, "get_device_properties", lambda device: Properties())
    cuda = torch.device("cuda", 0)
    assert batch_pixels(None, cuda, "fp32") == (40 * 2**30) // BYTES_PER_PIXEL["fp32"]
    assert batch_pixels(None, cuda, "bf16") == (40 * 2**30) // BYTES_PER_PIXEL["bf16"]
    Properties.total_memory = 2**30  # a small GPU: never below the CPU's budget
    assert batch_pixels(None, cuda, "fp32") == CPU_BATCH_PIXELS


def test_warm_up_stays_within_the_budget(
    monkeypatch: pytest.MonkeyPatch, make_settings: Callable[..., Settings]
) -> None:
    from app.scoring import build_scorer

    scorer, _ = build_scorer(make_settings())
    runner = scorer.runner
    counter = RowCounter(monkeypatch, runner)
    runner.warm_up([(32, 32), (64, 64)], batch_size=8, max_pixels=3 * PAIR)
    assert [rows for rows, _ in counter.passes] == [16, 6]  # 32 px: all 8 pairs; 64 px: 3
