"""flip and ms_ssim through the service: HTTP in, the reference packages' values out.

``flip`` against ``flip_evaluator.evaluate(ref, test, "LDR")`` (flip-evaluator 1.7, the mean of
its map) within 1e-4, ``ms_ssim`` against ``pytorch_msssim.ms_ssim(..., data_range=1,
size_average=False)`` (1.0.0, float64) within 1e-5, on scikit-image photographs uploaded as PNG
(the server decodes exactly the arrays the test holds): a JPEG candidate among them and an
odd-sized crop (161 x 203). Then the batch, masks, the smallest sizes, the viewing conditions,
the FLIP map and the surfaces around them.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import flip_evaluator
import numpy as np
import pytest
import torch
from fastapi.testclient import TestClient
from pytorch_msssim import ms_ssim as reference_ms_ssim

from app.flip_map import flip_map_png
from app.scores import composite, flip_map, mean_error, ms_ssim
from app.scores.flip_viewing import resolve_ppd
from devtools.http import batch_files, pair_files, sample
from devtools.images import decode_png, distort, encode, photo, to_tensor
from devtools.servers import queue_of, running_client
from devtools.settings import settings_for

FLIP_TOLERANCE = 1e-4  # the bounds against the reference implementations
MS_SSIM_TOLERANCE = 1e-5
SIDE = 192  # ms_ssim needs 161 px


def photo_pairs() -> list[tuple[str, np.ndarray, np.ndarray]]:
    pairs = []
    for name, kind in (("astronaut", "jpeg"), ("coffee", "blur"), ("chelsea", "noise")):
        reference = photo(name, SIDE)
        pairs.append((f"{name}-{kind}", reference, distort(reference, kind)))
    crop = np.ascontiguousarray(photo("rocket")[40 : 40 + 161, 60 : 60 + 203])
    pairs.append(("rocket-crop-161x203-jpeg", crop, distort(crop, "jpeg", strength=0.5)))
    return pairs


PAIRS = photo_pairs()
IDS = [name for name, _, _ in PAIRS]


@pytest.fixture(scope="module")
def client(weights_file: Path) -> Iterator[TestClient]:
    with running_client(settings_for(weights_file)) as test_client:
        yield test_client


def post(client: TestClient, path: str, files: Any, **data: str) -> dict[str, Any]:
    response = client.post(path, files=files, data=data)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def compare(client: TestClient, x: np.ndarray, y: np.ndarray, **data: str) -> dict[str, Any]:
    return post(client, "/compare", pair_files(encode(x), encode(y)), **data)


def as_float(image: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(image.astype(np.float32) / 255)


def reference_flip(x: np.ndarray, y: np.ndarray, **parameters: Any) -> tuple[np.ndarray, float]:
    error_map, mean, _ = flip_evaluator.evaluate(
        as_float(x), as_float(y), "LDR", applyMagma=False, parameters=parameters
    )
    return error_map[..., 0], float(mean)


def expected_ms_ssim(x: np.ndarray, y: np.ndarray) -> float:
    tx, ty = to_tensor(x)[None].double(), to_tensor(y)[None].double()
    return float(reference_ms_ssim(tx, ty, data_range=1.0, size_average=False)[0])


@pytest.mark.parametrize(("name", "x", "y"), PAIRS, ids=IDS)
def test_each_score_equals_its_reference_implementation(
    client: TestClient, name: str, x: np.ndarray, y: np.ndarray
) -> None:
    scores = compare(client, x, y, scores="flip,ms_ssim")["scores"]
    assert scores["flip"] == pytest.approx(reference_flip(x, y)[1], abs=FLIP_TOLERANCE)
    assert scores["ms_ssim"] == pytest.approx(expected_ms_ssim(x, y), abs=MS_SSIM_TOLERANCE)
    assert set(scores) == {"vgg", "style", "ssim", "mse", "psnr", "flip", "ms_ssim"}
    assert scores["vgg"] is None  # only what was asked for is computed


def test_identical_images_score_flip_0_and_ms_ssim_1(client: TestClient) -> None:
    image = photo("astronaut", SIDE)
    scores = compare(client, image, image, scores="flip,ms_ssim")["scores"]
    assert scores["flip"] == 0.0
    assert scores["ms_ssim"] == pytest.approx(1.0, abs=1e-6)


def test_the_batch_scores_as_compare_does(client: TestClient) -> None:
    """One reference, several candidates (its FLIP filtering done once for all of them): each
    equals its own /compare, the order kept."""
    reference = photo("coffee", SIDE)
    candidates = [distort(reference, kind) for kind in ("jpeg", "blur", "noise", "colour")]
    files = batch_files(encode(reference), [encode(c) for c in candidates])
    batch = post(client, "/compare/batch", files, scores="flip,ms_ssim")["results"]
    for item, candidate in zip(batch, candidates, strict=True):
        alone = compare(client, reference, candidate, scores="flip,ms_ssim")["scores"]
        for name in ("flip", "ms_ssim"):
            assert item["scores"][name] == pytest.approx(alone[name], abs=1e-9)
        assert item["scores"]["flip"] == pytest.approx(
            reference_flip(reference, candidate)[1], abs=FLIP_TOLERANCE
        )


def ring_mask(height: int, width: int) -> np.ndarray:
    """An RGBA mask whose alpha selects a block well inside the image (every MS-SSIM scale has
    window centres in it)."""
    rgba = np.zeros((height, width, 4), dtype=np.uint8)
    rgba[20 : height - 10, 30 : width - 20] = 255
    return rgba


def test_masked_scores_follow_their_rules(client: TestClient) -> None:
    """flip: the mean of the pair's error map over the mask (outside it the candidate is the
    reference's pixels); ms_ssim: the mask carried down the scales. Both equal their functions
    on the composited pair exactly as the docs state them, and flip equals the reference
    tool's map averaged over the mask."""
    x = photo("chelsea", SIDE)
    y = distort(x, "noise")
    mask_image = ring_mask(*x.shape[:2])
    files = pair_files(encode(x), encode(y), mask=encode(mask_image))
    scores = post(client, "/compare", files, scores="flip,ms_ssim")["scores"]
    inside = torch.from_numpy(mask_image[..., 3] > 0)[None, None]
    tx, ty = to_tensor(x)[None], to_tensor(y)[None]
    mixed = composite(tx, ty, inside)
    assert scores["flip"] == pytest.approx(
        float(mean_error(flip_map(tx, mixed), mask=inside)[0]), abs=1e-9
    )
    tool_map, _ = reference_flip(x, mixed[0].permute(1, 2, 0).mul(255).round().byte().numpy())
    assert scores["flip"] == pytest.approx(
        float(tool_map[inside[0, 0].numpy()].mean()), abs=FLIP_TOLERANCE
    )
    assert scores["ms_ssim"] == pytest.approx(float(ms_ssim(tx, mixed, mask=inside)[0]), abs=1e-9)
    unmasked = compare(client, x, y, scores="flip,ms_ssim")["scores"]
    assert scores["flip"] != pytest.approx(unmasked["flip"], abs=1e-4)


def test_a_mask_too_close_to_the_borders_for_ms_ssim_is_422(client: TestClient) -> None:
    x = photo("coffee", SIDE)
    rgba = np.zeros((SIDE, SIDE, 4), dtype=np.uint8)
    rgba[:20, :20] = 255  # a corner: no window centre at the fifth scale
    files = pair_files(encode(x), encode(distort(x, "blur")), mask=encode(rgba))
    response = client.post("/compare", files=files, data={"scores": "ms_ssim"})
    assert response.status_code == 422
    assert "MS-SSIM window centre" in response.json()["detail"]
    response = client.post("/compare", files=files, data={"scores": "flip"})
    assert response.status_code == 200, response.text  # flip takes any mask that selects


@pytest.mark.parametrize("side", [160, 128, 17])
def test_ms_ssim_under_161_px_is_422_naming_the_minimum(client: TestClient, side: int) -> None:
    x = photo("astronaut", side)
    response = client.post(
        "/compare",
        files=pair_files(encode(x), encode(distort(x, "jpeg"))),
        data={"scores": "ms_ssim,flip"},
    )
    assert response.status_code == 422
    detail = response.json()["detail"]
    assert "ms_ssim" in detail and "161 px" in detail and f"{side}x{side} px" in detail


def test_flip_alone_and_the_other_scores_are_not_refused_for_ms_ssim(client: TestClient) -> None:
    x = photo("astronaut", 128)
    y = distort(x, "jpeg")
    scores = compare(client, x, y, scores="flip")["scores"]
    assert scores["flip"] == pytest.approx(reference_flip(x, y)[1], abs=FLIP_TOLERANCE)
    assert compare(client, x, y)["scores"]["ssim"] is not None


def test_only_pixel_scores_run_no_network(
    client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    runner = queue_of(client.app).scorer.runner
    passes: list[str] = []
    real = runner.forward

    def forward(images: torch.Tensor, network: str = "vgg19") -> list[torch.Tensor]:
        passes.append(network)
        return real(images, network)

    monkeypatch.setattr(runner, "forward", forward)
    x = photo("rocket", SIDE)
    compare(client, x, distort(x, "blur"), scores="flip,ms_ssim")
    assert passes == []
    compare(client, x, distort(x, "noise"), scores="flip,vgg")
    assert passes == ["vgg19"]


def test_viewing_conditions_move_flip_as_the_reference_tool_does(client: TestClient) -> None:
    x = photo("chelsea", SIDE)
    y = distort(x, "jpeg")
    conditions = {"distance_m": 1.0, "monitor_width_m": 0.6, "monitor_width_px": 2560.0}
    given = compare(client, x, y, scores="flip", **{k: str(v) for k, v in conditions.items()})
    _, expected = reference_flip(x, y, vc=[1.0, 2560.0, 0.6])
    assert given["scores"]["flip"] == pytest.approx(expected, abs=FLIP_TOLERANCE)
    ppd = resolve_ppd(**conditions)
    direct = compare(client, x, y, scores="flip", ppd=repr(ppd))["scores"]["flip"]
    assert direct == pytest.approx(given["scores"]["flip"], abs=1e-9)
    default = compare(client, x, y, scores="flip")["scores"]["flip"]
    assert default != pytest.approx(direct, abs=1e-4)


@pytest.mark.parametrize(
    ("fields", "named"),
    [
        ({"ppd": "0"}, "ppd"),
        ({"ppd": "nan"}, "ppd"),
        ({"ppd": "700"}, "ppd"),
        ({"distance_m": "-1"}, "distance_m"),
        ({"monitor_width_px": "wide"}, "monitor_width_px"),
        ({"monitor_width_m": "inf"}, "monitor_width_m"),
        ({"ppd": "60", "distance_m": "0.5"}, "ppd"),
    ],
)
def test_bad_viewing_conditions_are_422_naming_them(
    client: TestClient, fields: dict[str, str], named: str
) -> None:
    x = photo("coffee", 64)
    for path, files in (
        ("/compare", pair_files(encode(x), encode(x))),
        ("/compare/batch", batch_files(encode(x), [encode(x)])),
        ("/compare/map", pair_files(encode(x), encode(x))),
    ):
        data = (
            {"scores": "flip", **fields}
            if path != "/compare/map"
            else {"map_kind": "flip", **fields}
        )
        response = client.post(path, files=files, data=data)
        assert response.status_code == 422, (path, response.text)
        assert named in response.json()["detail"]


def test_the_flip_map_is_the_error_map_in_magma(client: TestClient) -> None:
    x = photo("astronaut", SIDE)
    y = distort(x, "jpeg")
    response = client.post(
        "/compare/map", files=pair_files(encode(x), encode(y)), data={"map_kind": "flip"}
    )
    assert response.status_code == 200, response.text
    assert response.headers["x-map-kind"] == "flip"
    drawn = decode_png(response.content)
    assert drawn.shape == (*x.shape[:2], 3)
    ours = decode_png(flip_map_png(flip_map(to_tensor(x)[None], to_tensor(y)[None])[0, 0]))
    np.testing.assert_array_equal(drawn, ours)
    tool_map, _ = reference_flip(x, y)
    tool = decode_png(flip_map_png(torch.from_numpy(tool_map)))
    # the same error values through the tool's table: an entry apart at most, where a value
    # lies on the boundary between two entries
    assert np.abs(drawn.astype(int) - tool.astype(int)).max() <= 8
    assert (drawn != tool).any(axis=2).mean() < 0.01
    included = compare(client, x, y, scores="flip", include_map="true", map_kind="flip")
    assert included["map_png_base64"]


def test_get_scores_lists_flip_and_ms_ssim(client: TestClient) -> None:
    entries = {e["name"]: e for e in client.get("/scores").json()["scores"]}
    assert entries["flip"]["backbone"] is None and entries["flip"]["direction"] == "lower"
    assert entries["flip"]["min_side"] == 16 and entries["flip"]["map_kind"] == "flip"
    assert entries["ms_ssim"]["direction"] == "higher" and entries["ms_ssim"]["min_side"] == 161
    assert entries["flip"]["available"] and entries["ms_ssim"]["available"]


def test_timings_and_the_schema_know_them(client: TestClient) -> None:
    x = photo("coffee", SIDE)
    compare(client, x, distort(x, "blur"), scores="flip,ms_ssim")
    for name in ("flip", "ms_ssim"):
        assert sample(client.app, "simscore_score_seconds_count", {"score": name}) >= 1
    schemas = client.get("/openapi.json").json()["components"]["schemas"]
    assert {"flip", "ms_ssim"} <= set(schemas["ScoreName"]["enum"])
    assert "flip" in schemas["MapKind"]["enum"]
    for form in ("CompareForm", "CompareBatchForm", "CompareMapForm"):
        assert {"ppd", "distance_m", "monitor_width_m", "monitor_width_px"} <= set(
            schemas[form]["properties"]
        )
