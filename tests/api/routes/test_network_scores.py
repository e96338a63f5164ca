"""lpips, lpips_vgg and dists through the service: HTTP in, the reference packages' values out.

The server loads seeded random AlexNet and VGG16 files through its own loading path
(``SIMSCORE_ALEXNET_WEIGHTS``, ``SIMSCORE_VGG16_WEIGHTS``); the packages (``lpips`` 0.1.4,
``DISTS_pytorch`` 0.1) get the same state_dicts, and score the same decoded pixels (PNG uploads:
the server decodes exactly the arrays the test holds)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from fastapi.testclient import TestClient
from torch import nn

from app.difference_map import colorize
from app.models import registry
from app.models.alexnet import ALEXNET_CHANNELS
from app.models.dists import DISTS_CHANNELS
from app.models.vgg16 import VGG16_CHANNELS
from app.models.weights import load_dists_head, load_lpips_head
from app.scores import composite, dists, lpips, lpips_map, tap_weights
from devtools.http import batch_files, pair_files, sample
from devtools.images import decode_png, disc, distort, distorted_photos, encode, photo, to_tensor
from devtools.packages import reference_dists, reference_lpips
from devtools.servers import running_client, service_of
from devtools.settings import settings_for

NETWORK_SCORES = ("lpips", "lpips_vgg", "dists")
RTOL, ATOL = 1e-4, 1e-6  # the tolerance against the packages
SIDE = 96


PAIRS = distorted_photos(SIDE)
IDS = [name for name, _, _ in PAIRS]


@pytest.fixture(scope="module")
def client(weights_file: Path, backbone_files: dict[str, Path]) -> Iterator[TestClient]:
    settings = settings_for(
        weights_file,
        alexnet_weights=str(backbone_files["alexnet"]),
        vgg16_weights=str(backbone_files["vgg16"]),
    )
    with running_client(settings) as test_client:
        yield test_client


@pytest.fixture(scope="module")
def packages(
    seeded_backbones: dict[str, tuple[Path, dict[str, torch.Tensor]]],
) -> dict[str, Callable[[torch.Tensor, torch.Tensor], float]]:
    """Each score as its reference package computes it, ``(1, 3, H, W)`` in [0, 1] each."""
    alex = reference_lpips("alex", seeded_backbones["alexnet"][1])
    vgg = reference_lpips("vgg", seeded_backbones["vgg16"][1])
    dists_model = reference_dists(seeded_backbones["vgg16"][1])

    def run(model: Any, **options: Any) -> Callable[[torch.Tensor, torch.Tensor], float]:
        def score(x: torch.Tensor, y: torch.Tensor) -> float:
            with torch.no_grad():
                return float(model(x, y, **options))

        return score

    return {
        "lpips": run(alex, normalize=True),
        "lpips_vgg": run(vgg, normalize=True),
        "dists": run(dists_model),
    }


def post(client: TestClient, path: str, files: Any, **data: str) -> dict[str, Any]:
    response = client.post(path, files=files, data=data)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def compare(client: TestClient, x: np.ndarray, y: np.ndarray, **data: str) -> dict[str, Any]:
    return post(client, "/compare", pair_files(encode(x), encode(y)), **data)


@pytest.mark.parametrize(("name", "x", "y"), PAIRS, ids=IDS)
def test_each_score_equals_its_reference_package(
    client: TestClient,
    packages: dict[str, Callable[[torch.Tensor, torch.Tensor], float]],
    name: str,
    x: np.ndarray,
    y: np.ndarray,
) -> None:
    body = compare(client, x, y, scores=",".join(NETWORK_SCORES))
    tx, ty = to_tensor(x)[None], to_tensor(y)[None]
    for score in NETWORK_SCORES:
        theirs = packages[score](tx, ty)
        assert body["scores"][score] > 1e-4, score  # a distinct pair: not two zeros compared
        assert body["scores"][score] == pytest.approx(theirs, rel=RTOL, abs=ATOL), score
    assert body["scores"]["vgg"] is None and body["scores"]["ssim"] is None
    backbones = body["model"]["backbones"]
    assert set(backbones) == {"alexnet", "vgg16"}
    assert {b["weights"] for b in backbones.values()} == {"file"}


def test_identical_images_score_exactly_zero(client: TestClient) -> None:
    image = photo("chelsea", SIDE)
    body = compare(client, image, image.copy(), scores=",".join(NETWORK_SCORES))
    assert {score: body["scores"][score] for score in NETWORK_SCORES} == dict.fromkeys(
        NETWORK_SCORES, 0.0
    )


def test_a_request_that_names_no_scores_answers_as_before(client: TestClient) -> None:
    """The opt-in scores are absent, and so is the other backbones' provenance."""
    _, x, y = PAIRS[0]
    body = compare(client, x, y)
    assert set(body["scores"]) == {"vgg", "style", "ssim", "mse", "psnr"}
    assert all(value is not None for value in body["scores"].values())
    assert "backbones" not in body["model"]


def test_the_batch_endpoint_equals_compare_pair_by_pair(client: TestClient) -> None:
    reference = photo("astronaut", SIDE)
    candidates = [distort(reference, kind) for kind in ("jpeg", "blur", "noise", "colour")]
    candidates.append(reference.copy())  # identical: exact zeros in a batch too
    scores = ",".join((*NETWORK_SCORES, "ssim"))
    files = batch_files(encode(reference), [encode(c) for c in candidates])
    batch = post(client, "/compare/batch", files, scores=scores)["results"]
    for item, candidate in zip(batch, candidates, strict=True):
        alone = compare(client, reference, candidate, scores=scores)
        for score in (*NETWORK_SCORES, "ssim"):
            assert item["scores"][score] == pytest.approx(
                alone["scores"][score], rel=1e-5, abs=1e-9
            ), score
    assert all(batch[-1]["scores"][score] == 0.0 for score in NETWORK_SCORES)


class ForwardCounter:
    """Counts the runner's forward passes per network, and their rows."""

    def __init__(self, client: TestClient, monkeypatch: pytest.MonkeyPatch) -> None:
        runner = service_of(client.app).pipeline.queue.scorer.runner  # type: ignore[union-attr]
        forward = runner.forward
        self.calls: dict[str, list[int]] = {}

        def counted(images: torch.Tensor, network: str = "vgg19") -> list[torch.Tensor]:
            self.calls.setdefault(network, []).append(int(images.shape[0]))
            taps: list[torch.Tensor] = forward(images, network)
            return taps

        monkeypatch.setattr(runner, "forward", counted)


@pytest.mark.parametrize(
    ("scores", "networks"),
    [
        ("ssim,mse", {}),
        ("lpips", {"lpips_alexnet": 1}),
        ("vgg,lpips_vgg", {"vgg19": 1, "lpips_vgg16": 1}),
        ("dists", {"dists_vgg16": 1}),
        ("lpips,lpips_vgg,dists,style", {n: 1 for n in ("vgg19", "lpips_alexnet",
                                                         "lpips_vgg16", "dists_vgg16")}),
    ],
)  # fmt: skip
def test_only_the_networks_the_scores_need_run(
    client: TestClient, monkeypatch: pytest.MonkeyPatch, scores: str, networks: dict[str, int]
) -> None:
    counter = ForwardCounter(client, monkeypatch)
    _, x, y = PAIRS[1]
    noisy = distort(x, "noise", seed=len(scores))  # its own reference: not in the cache
    compare(client, noisy, y, scores=scores)
    assert {network: len(rows) for network, rows in counter.calls.items()} == networks
    assert all(rows == [2] for rows in counter.calls.values())  # reference and candidate at once


def test_a_cached_reference_runs_only_the_candidates(
    client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    reference = distort(photo("coffee", SIDE), "colour", seed=7)  # in no other test
    first = compare(client, reference, distort(reference, "blur"), scores="lpips")
    counter = ForwardCounter(client, monkeypatch)
    again = compare(client, reference, distort(reference, "jpeg"), scores="lpips,dists")
    assert not first["reference_cached"]
    assert counter.calls == {"lpips_alexnet": [1], "dists_vgg16": [2]}  # AlexNet's taps cached
    assert not again["reference_cached"]  # VGG16 still ran the reference
    counter.calls.clear()
    third = compare(client, reference, distort(reference, "noise"), scores="lpips,dists")
    assert counter.calls == {"lpips_alexnet": [1], "dists_vgg16": [1]}
    assert third["reference_cached"]


def test_per_score_and_per_network_timings_are_exported(client: TestClient) -> None:
    _, x, y = PAIRS[2]
    before = sample(client.app, "simscore_network_seconds_count", {"network": "lpips_alexnet"})
    compare(client, x, y, scores="lpips,ssim")
    after = sample(client.app, "simscore_network_seconds_count", {"network": "lpips_alexnet"})
    assert after == before + 1
    assert sample(client.app, "simscore_score_seconds_count", {"score": "lpips"}) >= 1
    assert sample(client.app, "simscore_score_seconds_count", {"score": "ssim"}) >= 1


# -- masks: the metric functions on the composited pair, with the mask at each tap ------------


def masked_expected(
    networks: dict[str, nn.Module], x: np.ndarray, y: np.ndarray, region: np.ndarray
) -> dict[str, float]:
    """Each score by the rule: the candidate composited with the reference outside the mask,
    each tap's map (lpips) or statistics (dists) weighted by the mask's cell fractions."""
    tx, ty = to_tensor(x)[None], to_tensor(y)[None]
    mask = torch.from_numpy(region)[None, None]
    candidate = composite(tx, ty, mask)
    alex_heads = load_lpips_head(registry.LPIPS_ALEX_HEAD, ALEXNET_CHANNELS)
    vgg_heads = load_lpips_head(registry.LPIPS_VGG_HEAD, VGG16_CHANNELS)
    alpha, beta = load_dists_head(registry.DISTS_HEAD, DISTS_CHANNELS)
    out = {}
    with torch.inference_mode():
        for score, network, heads in (
            ("lpips", "lpips_alexnet", alex_heads),
            ("lpips_vgg", "lpips_vgg16", vgg_heads),
        ):
            fx, fy = networks[network](tx), networks[network](candidate)
            cells = tap_weights(mask, [t.shape for t in fx])
            out[score] = float(lpips(fx, fy, heads=heads, masks=cells)[0])
        fx, fy = networks["dists_vgg16"](tx), networks["dists_vgg16"](candidate)
        cells = tap_weights(mask, [t.shape for t in fx])
        out["dists"] = float(dists(fx, fy, alpha=alpha, beta=beta, masks=cells))
    return out


@pytest.mark.parametrize(("name", "x", "y"), [PAIRS[0], PAIRS[4]], ids=[IDS[0], IDS[4]])
def test_masked_scores_are_the_metric_functions_on_the_composited_pair(
    client: TestClient, networks: dict[str, nn.Module], name: str, x: np.ndarray, y: np.ndarray
) -> None:
    region = disc(*x.shape[:2])
    mask = encode((region * 255).astype(np.uint8))
    files = pair_files(encode(x), encode(y), mask)
    body = post(client, "/compare", files, scores=",".join(NETWORK_SCORES))
    expected = masked_expected(networks, x, y, region)
    for score in NETWORK_SCORES:
        assert body["scores"][score] == pytest.approx(expected[score], rel=1e-5, abs=1e-9), score
    unmasked = compare(client, x, y, scores=",".join(NETWORK_SCORES))
    assert all(body["scores"][s] != unmasked["scores"][s] for s in NETWORK_SCORES)


def test_a_change_outside_the_mask_scores_exactly_zero(client: TestClient) -> None:
    x = photo("astronaut", SIDE)
    changed = x.copy()
    changed[:30, :40] = distort(x, "noise", strength=4)[:30, :40]
    region = np.ones(x.shape[:2], bool)
    region[:30, :40] = False
    files = pair_files(encode(x), encode(changed), encode((region * 255).astype(np.uint8)))
    body = post(client, "/compare", files, scores=",".join(NETWORK_SCORES))
    assert [body["scores"][score] for score in NETWORK_SCORES] == [0.0, 0.0, 0.0]


# -- maps --------------------------------------------------------------------------------------


@pytest.mark.parametrize(("kind", "network"), [("lpips", "lpips_alexnet"),
                                               ("lpips_vgg", "lpips_vgg16")])  # fmt: skip
def test_the_lpips_map_is_the_spatial_map_at_the_compared_size(
    client: TestClient, networks: dict[str, nn.Module], kind: str, network: str
) -> None:
    _, x, y = PAIRS[4]  # the odd-sized crop
    response = client.post("/compare/map", files=pair_files(encode(x), encode(y)),
                           data={"map_kind": kind})  # fmt: skip
    assert response.status_code == 200, response.text
    assert response.headers["x-map-kind"] == kind
    assert response.headers["x-map-range"] == "0.0,1.0"
    drawn = decode_png(response.content)
    assert drawn.shape == (*x.shape[:2], 3)
    spec = registry.LPIPS_ALEX_HEAD if kind == "lpips" else registry.LPIPS_VGG_HEAD
    heads = load_lpips_head(spec, ALEXNET_CHANNELS if kind == "lpips" else VGG16_CHANNELS)
    with torch.inference_mode():
        fx, fy = networks[network](to_tensor(x)[None]), networks[network](to_tensor(y)[None])
        values = lpips_map(fx, fy, heads=heads, size=x.shape[:2])[0, 0]
    expected = colorize(values, 0.0, 1.0)
    assert np.abs(drawn.astype(int) - expected.astype(int)).max() <= 3  # one step of 256
    included = compare(client, x, y, scores="ssim", include_map="true", map_kind=kind)
    assert "lpips" not in included["scores"]  # the map does not add its score to the answer
    import base64

    assert decode_png(base64.b64decode(included["map_png_base64"])).shape == drawn.shape


def test_the_map_of_identical_images_is_all_zero(client: TestClient) -> None:
    x = photo("rocket", SIDE)
    response = client.post("/compare/map", files=pair_files(encode(x), encode(x.copy())),
                           data={"map_kind": "lpips"})  # fmt: skip
    drawn = decode_png(response.content)
    assert (drawn == colorize(torch.zeros(1, 1), 0.0, 1.0)[0, 0]).all()


# -- refusals ----------------------------------------------------------------------------------


def test_an_image_under_a_scores_minimum_is_refused_only_for_that_score(
    client: TestClient,
) -> None:
    small = photo("chelsea", 24)
    files = pair_files(encode(small), encode(distort(small, "blur")))
    refused = client.post("/compare", files=files, data={"scores": "lpips,ssim"})
    assert refused.status_code == 422
    detail = refused.json()["detail"]
    assert "lpips" in detail and "31 px" in detail and "24x24" in detail
    for scores in ("ssim,mse", "lpips_vgg,dists"):  # 16 px suffices for these
        assert client.post("/compare", files=files, data={"scores": scores}).status_code == 200
    mapped = client.post("/compare/map", files=files, data={"map_kind": "lpips"})
    assert mapped.status_code == 422 and "31 px" in mapped.json()["detail"]


def test_an_unknown_score_is_refused(client: TestClient) -> None:
    _, x, y = PAIRS[0]
    response = client.post("/compare", files=pair_files(encode(x), encode(y)),
                           data={"scores": "lpips,niqe"})  # fmt: skip
    assert response.status_code == 422
    assert "unknown score(s) niqe" in response.json()["detail"]


def test_scores_lists_every_score_as_available(client: TestClient) -> None:
    body = client.get("/scores").json()
    assert [entry["name"] for entry in body["scores"]] == [
        "vgg", "style", "ssim", "mse", "psnr", "lpips", "lpips_vgg", "dists", "flip", "ms_ssim",
    ]  # fmt: skip
    assert all(entry["available"] and entry["reason"] is None for entry in body["scores"])
    lpips_entry = body["scores"][5]
    assert lpips_entry == {
        "name": "lpips",
        "backbone": "alexnet",
        "direction": "lower",
        "min_side": 31,
        "default": False,
        "available": True,
        "reason": None,
        "map_kind": "lpips",
    }
    assert body["default"] == ["vgg", "style", "ssim", "mse", "psnr"]
