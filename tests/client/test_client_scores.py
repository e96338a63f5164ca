"""The client and the opt-in scores: ``scores()`` typed entries, the typed fields of ``Scores``,
the LPIPS map, and an unavailable score as a typed error (sync and async)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from simscore_client import (
    AsyncSimscoreClient,
    InvalidRequestError,
    ScoreInfo,
    Scores,
    SimscoreClient,
    csv_row_of,
)
from simscore_client.vocabulary import DEFAULT_SCORE_NAMES, csv_columns, score_columns

from devtools.images import decode_png, photo_png
from devtools.servers import running, running_client
from devtools.settings import settings_for


@pytest.fixture(scope="module")
def server(weights_file: Path, backbone_files: dict[str, Path]) -> Iterator[TestClient]:
    settings = settings_for(
        weights_file,
        alexnet_weights=str(backbone_files["alexnet"]),
        vgg16_weights=str(backbone_files["vgg16"]),
    )
    with running_client(settings) as test_client:
        yield test_client


@pytest.fixture
def client(server: TestClient) -> SimscoreClient:
    return SimscoreClient(str(server.base_url), http_client=server)


def test_scores_lists_typed_entries(client: SimscoreClient) -> None:
    entries = client.scores()
    assert all(isinstance(entry, ScoreInfo) for entry in entries)
    by_name = {entry.name: entry for entry in entries}
    assert list(by_name) == [
        "vgg", "style", "ssim", "mse", "psnr", "lpips", "lpips_vgg", "dists", "flip", "ms_ssim"
    ]  # fmt: skip
    assert by_name["lpips"] == ScoreInfo(
        name="lpips",
        backbone="alexnet",
        direction="lower",
        min_side=31,
        default=False,
        available=True,
        reason=None,
        map_kind="lpips",
    )
    assert by_name["ssim"].backbone is None and by_name["ssim"].direction == "higher"
    assert [e.name for e in entries if e.default] == list(DEFAULT_SCORE_NAMES)


def test_the_opt_in_scores_are_typed_fields(client: SimscoreClient) -> None:
    reference, candidate = photo_png("chelsea"), photo_png("coffee")
    plain = client.compare(reference, candidate)
    assert (plain.scores.lpips, plain.scores.lpips_vgg, plain.scores.dists) == (None, None, None)
    result = client.compare(reference, candidate, scores=["lpips", "lpips_vgg", "dists"])
    assert isinstance(result.scores, Scores)
    assert result.scores.vgg is None
    for value in (result.scores.lpips, result.scores.lpips_vgg, result.scores.dists):
        assert value is not None and value > 0
    assert result.model["backbones"]["alexnet"]["weights"] == "file"
    items = client.compare_batch(reference, [candidate], scores="dists")
    assert items[0].scores.dists == pytest.approx(result.scores.dists, rel=1e-5)  # type: ignore[union-attr]
    columns = score_columns([item.raw for item in items])  # type: ignore[union-attr]
    assert columns == (*DEFAULT_SCORE_NAMES, "dists")
    row = csv_row_of("coffee.png", items[0], scores=columns)
    assert len(row) == len(csv_columns(columns))
    assert float(row[len(DEFAULT_SCORE_NAMES) + 1]) == items[0].scores.dists  # type: ignore[union-attr]


def test_the_lpips_map(client: SimscoreClient) -> None:
    heat = client.difference_map(photo_png("chelsea"), photo_png("coffee"), map_kind="lpips")
    assert heat.kind == "lpips" and heat.value_range == (0.0, 1.0)
    assert decode_png(heat.png).shape == (64, 96, 3)
    included = client.compare(
        photo_png("chelsea"), photo_png("coffee"), include_map=True, map_kind="lpips_vgg"
    )
    assert included.map_png is not None


def test_flip_and_ms_ssim_with_viewing_conditions(client: SimscoreClient) -> None:
    """The viewing conditions reach the server as fields (a ppd of 30 moves flip as the one
    computed from the equivalent distance), and both scores are typed fields."""
    reference, candidate = photo_png("chelsea", 256), photo_png("coffee", 256)
    default = client.compare(reference, candidate, scores="flip,ms_ssim")
    assert default.scores.flip is not None and 0 < default.scores.flip < 1
    assert default.scores.ms_ssim is not None and default.scores.ms_ssim < 1
    near = client.compare(reference, candidate, scores=["flip"], ppd=30.0)
    assert near.scores.flip != pytest.approx(default.scores.flip, abs=1e-4)
    items = client.compare_batch(
        reference, [candidate], scores="flip", distance_m=0.7 * 30 / 67.0206
    )
    assert items[0].scores.flip == pytest.approx(near.scores.flip, abs=1e-4)  # type: ignore[union-attr]
    heat = client.difference_map(reference, candidate, map_kind="flip", ppd=30.0)
    assert heat.kind == "flip" and decode_png(heat.png).shape == decode_png(reference).shape
    with pytest.raises(InvalidRequestError, match="ppd"):
        client.compare(reference, candidate, scores="flip", ppd=0.5)


async def test_async_scores_and_an_unavailable_score(weights_file: Path) -> None:
    settings = settings_for(weights_file)  # AlexNet and VGG16 absent
    async with (
        running(settings) as (_, http),
        AsyncSimscoreClient(str(http.base_url), http_client=http) as client,
    ):
        entries = await client.scores()
        assert [e.name for e in entries if not e.available] == ["lpips", "lpips_vgg", "dists"]
        by_name = {entry.name: entry for entry in entries}
        assert "SIMSCORE_VGG16_WEIGHTS" in (by_name["dists"].reason or "")
        with pytest.raises(InvalidRequestError, match="simscore fetch-weights --backbone alexnet"):
            await client.compare(photo_png("chelsea"), photo_png("coffee"), scores="lpips")
