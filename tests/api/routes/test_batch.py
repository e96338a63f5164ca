"""POST /compare/batch, POST /compare/map, include_map on /compare, and the web page's files."""

from __future__ import annotations

import base64
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from app.api.routes.page import STATIC_DIR
from app.difference_map import viridis_lut
from devtools.images import (
    decode_png,
    photo_png,
    solid_png,
)
from devtools.servers import running_client
from devtools.settings import settings_for

MAX_CANDIDATES = 6
SVG = b'<svg xmlns="http://www.w3.org/2000/svg" width="32" height="32"/>'
FIELDS = ("vgg", "style", "ssim", "mse", "psnr")


@pytest.fixture(scope="module")
def client(weights_file: Path) -> Iterator[TestClient]:
    # max_wait_ms=0: a batch holds only what was queued together, so batch sizes show whether
    # the candidates entered the batcher at once.
    settings = settings_for(
        weights_file, max_wait_ms=0, max_batch_candidates=MAX_CANDIDATES, reference_cache_size=0
    )
    with running_client(settings) as test_client:
        yield test_client


def batch_files(
    reference: bytes, candidates: list[bytes]
) -> list[tuple[str, tuple[str, bytes, str]]]:
    files = [("reference", ("reference.png", reference, "application/octet-stream"))]
    files += [
        ("candidates", (f"candidate-{i}.png", data, "application/octet-stream"))
        for i, data in enumerate(candidates)
    ]
    return files


def pair_files(reference: bytes, candidate: bytes) -> dict[str, tuple[str, bytes, str]]:
    return {
        "reference": ("reference.png", reference, "application/octet-stream"),
        "candidate": ("candidate.png", candidate, "application/octet-stream"),
    }


def sample(client: TestClient, name: str, labels: dict[str, str] | None = None) -> float:
    app = client.app
    assert isinstance(app, FastAPI)
    value = app.state.metrics.registry.get_sample_value(name, labels or {})
    return 0.0 if value is None else float(value)


def compare(client: TestClient, reference: bytes, candidate: bytes, **data: str) -> Any:
    response = client.post("/compare", files=pair_files(reference, candidate), data=data)
    assert response.status_code == 200, response.text
    return response.json()


# -- /compare/batch ------------------------------------------------------------------------


def test_batch_keeps_the_order_and_scores_as_compare_does(client: TestClient) -> None:
    reference = photo_png("chelsea")
    candidates = [photo_png("coffee"), photo_png("astronaut"), photo_png("chelsea")]
    response = client.post("/compare/batch", files=batch_files(reference, candidates))
    assert response.status_code == 200, response.text
    results = response.json()["results"]
    assert len(results) == 3
    for item, candidate in zip(results, candidates, strict=True):
        alone = compare(client, reference, candidate)
        for name in FIELDS:
            if alone["scores"][name] is None:
                assert item["scores"][name] is None
            else:
                assert item["scores"][name] == pytest.approx(alone["scores"][name], rel=1e-5)
        assert item["image"] == alone["image"]
    identical = results[2]["scores"]
    assert identical["mse"] == 0.0
    assert identical["ssim"] == pytest.approx(1.0, abs=1e-6)
    assert identical["psnr"] is None
    assert results[0]["scores"]["vgg"] != pytest.approx(results[1]["scores"]["vgg"])


def test_one_bad_candidate_fails_alone(client: TestClient) -> None:
    reference = photo_png("chelsea")
    candidates = [
        photo_png("coffee"),
        b"this is not an image",
        b"",
        SVG,
        solid_png(8, 8),
        photo_png("astronaut"),
    ]
    failures_before = sample(client, "simscore_request_failures_total", {"reason": "invalid_input"})
    response = client.post("/compare/batch", files=batch_files(reference, candidates))
    assert response.status_code == 200, response.text
    results = response.json()["results"]
    statuses = [item["error"]["status"] if "error" in item else 200 for item in results]
    assert statuses == [200, 400, 400, 415, 422, 200]
    details = [item["error"]["detail"] for item in results if "error" in item]
    assert "empty" in details[1]
    assert "SVG" in details[2]
    assert "16 px" in details[3]
    for item in (results[0], results[5]):
        assert set(item) >= {"scores", "layers", "image", "model", "timing_ms"}
        assert item["scores"]["ssim"] < 1
    failures_after = sample(client, "simscore_request_failures_total", {"reason": "invalid_input"})
    assert failures_after - failures_before == 4


def test_candidates_enter_the_batcher_together(client: TestClient) -> None:
    reference = photo_png("coffee")
    candidates = [photo_png(name) for name in ("astronaut", "chelsea", "coffee", "astronaut")]
    count_before = sample(client, "simscore_batch_size_count")
    sum_before = sample(client, "simscore_batch_size_sum")
    response = client.post("/compare/batch", files=batch_files(reference, candidates))
    assert response.status_code == 200, response.text
    assert [item["timing_ms"]["batch_size"] for item in response.json()["results"]] == [4] * 4
    assert sample(client, "simscore_batch_size_count") - count_before == 1
    assert sample(client, "simscore_batch_size_sum") - sum_before == 4


def test_strict_size_policy_fails_only_the_mismatched_candidate(client: TestClient) -> None:
    reference = photo_png("chelsea")  # 96 x 64
    candidates = [photo_png("coffee"), photo_png("astronaut")]  # 96 x 64, 96 x 96
    response = client.post(
        "/compare/batch",
        files=batch_files(reference, candidates),
        data={"size_policy": "strict", "metrics": "ssim,mse"},
    )
    assert response.status_code == 200, response.text
    first, second = response.json()["results"]
    assert first["scores"]["vgg"] is None
    assert first["scores"]["ssim"] is not None
    assert second["error"]["status"] == 422
    assert "size_policy=resize" in second["error"]["detail"]


@pytest.mark.parametrize(
    ("reference", "candidates", "status", "words"),
    [
        (b"garbage", [b"x"], 400, "reference"),
        (b"", [b"x"], 400, "empty"),
        (None, [b"x"] * (MAX_CANDIDATES + 1), 422, "SIMSCORE_MAX_BATCH_CANDIDATES"),
        (None, [], 422, "candidates"),
    ],
    ids=["bad-reference", "empty-reference", "too-many", "none"],
)
def test_batch_request_errors(
    client: TestClient, reference: bytes | None, candidates: list[bytes], status: int, words: str
) -> None:
    data = photo_png("chelsea") if reference is None else reference
    response = client.post("/compare/batch", files=batch_files(data, candidates))
    assert response.status_code == status, response.text
    assert words in response.json()["detail"]


def test_batch_rejects_an_unknown_metric(client: TestClient) -> None:
    response = client.post(
        "/compare/batch",
        files=batch_files(photo_png("chelsea"), [photo_png("coffee")]),
        data={"metrics": "ssim,niqe"},
    )
    assert response.status_code == 422
    assert "niqe" in response.json()["detail"]


@pytest.mark.parametrize("path", ["/compare", "/compare/batch"])
@pytest.mark.parametrize("metrics", [",", " , ,", ""])
def test_metrics_naming_nothing_means_all(client: TestClient, path: str, metrics: str) -> None:
    """Found by schemathesis: ``metrics=","`` used to reach the scorer as an empty set (500)."""
    field = "candidate" if path == "/compare" else "candidates"
    files = [
        ("reference", ("r.png", photo_png("chelsea"), "image/png")),
        (field, ("c.png", photo_png("coffee"), "image/png")),
    ]
    response = client.post(path, files=files, data={"metrics": metrics})
    assert response.status_code == 200, response.text
    body = response.json()
    scores = body["scores"] if path == "/compare" else body["results"][0]["scores"]
    assert all(scores[name] is not None for name in FIELDS)


# -- /compare/map and include_map ----------------------------------------------------------


@pytest.mark.parametrize("kind", ["ssim", "abs"])
def test_map_is_a_png_at_the_compared_size(client: TestClient, kind: str) -> None:
    reference, candidate = photo_png("chelsea"), photo_png("astronaut")  # 96x64, 96x96
    response = client.post(
        "/compare/map", files=pair_files(reference, candidate), data={"kind": kind}
    )
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "image/png"
    assert response.headers["x-map-kind"] == kind
    assert response.headers["x-map-range"] == "0.0,1.0"
    image = compare(client, reference, candidate)["image"]
    assert (image["width"], image["height"]) == (96, 64)
    assert decode_png(response.content).shape == (image["height"], image["width"], 3)


@pytest.mark.parametrize(("kind", "index"), [("abs", 0), ("ssim", 255)])
def test_map_of_identical_images_is_one_colour(client: TestClient, kind: str, index: int) -> None:
    """abs: every pixel is the colour of 0; ssim: the colour of 1."""
    image = photo_png("coffee")
    response = client.post("/compare/map", files=pair_files(image, image), data={"kind": kind})
    assert response.status_code == 200, response.text
    rgb = decode_png(response.content)
    assert (rgb == viridis_lut()[index]).all()


def test_map_of_different_images_is_not_one_colour(client: TestClient) -> None:
    response = client.post(
        "/compare/map",
        files=pair_files(photo_png("chelsea"), photo_png("coffee")),
        data={"kind": "abs"},
    )
    rgb = decode_png(response.content)
    assert len({tuple(pixel) for pixel in rgb.reshape(-1, 3)}) > 20


def test_map_defaults_to_ssim(client: TestClient) -> None:
    response = client.post(
        "/compare/map", files=pair_files(photo_png("chelsea"), photo_png("coffee"))
    )
    assert response.status_code == 200
    assert response.headers["x-map-kind"] == "ssim"


@pytest.mark.parametrize(
    ("form", "replace", "status"),
    [
        ({"kind": "mse"}, {}, 422),
        ({}, {"candidate": b"GIF89a-broken"}, 400),
        ({}, {"reference": solid_png(10, 40)}, 422),
    ],
    ids=["bad-kind", "bad-candidate", "too-small"],
)
def test_map_errors_are_json(
    client: TestClient, form: dict[str, str], replace: dict[str, bytes], status: int
) -> None:
    images = {"reference": photo_png("chelsea"), "candidate": photo_png("coffee"), **replace}
    response = client.post(
        "/compare/map", files=pair_files(images["reference"], images["candidate"]), data=form
    )
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    assert response.json()["detail"]


@pytest.mark.parametrize("kind", ["ssim", "abs"])
def test_include_map_embeds_the_same_png(client: TestClient, kind: str) -> None:
    reference, candidate = photo_png("chelsea"), photo_png("astronaut")
    body = compare(client, reference, candidate, include_map="true", map_kind=kind)
    embedded = base64.b64decode(body["map_png_base64"])
    direct = client.post(
        "/compare/map", files=pair_files(reference, candidate), data={"kind": kind}
    )
    assert embedded == direct.content
    assert decode_png(embedded).shape == (body["image"]["height"], body["image"]["width"], 3)


def test_no_map_unless_asked(client: TestClient) -> None:
    body = compare(client, photo_png("chelsea"), photo_png("coffee"))
    assert body["map_png_base64"] is None


# -- the web page --------------------------------------------------------------------------


def test_page_is_served_with_its_test_hooks(client: TestClient) -> None:
    response = client.get("/")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    assert "default-src 'self'" in response.headers["content-security-policy"]
    html = response.text
    for hook in (
        'name="reference"',
        'name="candidate"',
        '<button type="submit"',
        *(f'data-metric="{name}"' for name in FIELDS),
    ):
        assert hook in html, hook
    for asset in ("static/app.js", "static/style.css"):
        assert asset in html
        served = client.get("/" + asset)
        assert served.status_code == 200, asset


def test_every_input_has_a_label() -> None:
    html = (STATIC_DIR / "index.html").read_text()
    ids = re.findall(r"<(?:input|select)[^>]*\bid=\"([^\"]+)\"", html)
    assert {"reference", "candidate", "size-policy", "api-key"} <= set(ids)
    for element_id in ids:
        assert f'<label for="{element_id}"' in html, element_id


def test_static_files_load_nothing_from_elsewhere() -> None:
    for path in STATIC_DIR.iterdir():
        text = path.read_text()
        assert not re.search(r"(?:https?:)?//[\w.-]+\.[a-z]{2,}/", text), path.name
        assert "@import" not in text, path.name
