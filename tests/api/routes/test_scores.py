"""``GET /scores`` and what a server without the optional backbones does: it starts, serves the
other scores, lists the missing ones as unavailable with why, and answers a request for one with
a 422 naming the setting and the fetch command, before decoding anything."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from pydantic import SecretStr

from app.config import Settings
from devtools.http import batch_files, pair_files
from devtools.images import photo_png
from devtools.servers import running_client

KEY = "a-key-of-sixteen-chars"
FETCH = {"lpips": "alexnet", "lpips_vgg": "vgg16", "dists": "vgg16"}
SETTING = {"lpips": "SIMSCORE_ALEXNET_WEIGHTS", "lpips_vgg": "SIMSCORE_VGG16_WEIGHTS",
           "dists": "SIMSCORE_VGG16_WEIGHTS"}  # fmt: skip


def test_without_the_optional_weights_the_service_starts_and_says_why(
    make_settings: Callable[..., Settings],
) -> None:
    with running_client(make_settings()) as client:
        assert client.get("/readyz").status_code == 200
        entries = {entry["name"]: entry for entry in client.get("/scores").json()["scores"]}
        for name in ("vgg", "style", "ssim", "mse", "psnr"):
            assert entries[name]["available"] and entries[name]["reason"] is None
        for name, backbone in FETCH.items():
            entry = entries[name]
            assert not entry["available"]
            assert SETTING[name] in entry["reason"]
            assert f"simscore fetch-weights --backbone {backbone}" in entry["reason"]
        # the other scores are served as before
        files = pair_files(photo_png("chelsea"), photo_png("astronaut"))
        assert client.post("/compare", files=files).status_code == 200


@pytest.mark.parametrize("score", ["lpips", "lpips_vgg", "dists"])
@pytest.mark.parametrize("path", ["/compare", "/compare/batch", "/compare/map"])
def test_asking_for_an_unavailable_score_is_a_422_before_decoding(
    make_settings: Callable[..., Settings], score: str, path: str
) -> None:
    """The candidate is not an image: the answer is still the 422 about the score, so the check
    ran before decoding."""
    reference = photo_png("chelsea")
    data: dict[str, Any] = {"scores": f"ssim,{score}"}
    if path == "/compare/batch":
        files = batch_files(reference, [b"not an image"])
    else:
        files = pair_files(reference, b"not an image")
    if path == "/compare/map":
        if score == "dists":
            pytest.skip("dists draws no map")
        data = {"map_kind": score}
    with running_client(make_settings()) as client:
        response = client.post(path, files=files, data=data)
    assert response.status_code == 422, response.text
    detail = response.json()["detail"]
    assert detail.startswith(f"{score} is not available on this server")
    assert SETTING[score] in detail
    assert f"`simscore fetch-weights --backbone {FETCH[score]}`" in detail


def test_include_map_of_an_unavailable_kind_is_refused(
    make_settings: Callable[..., Settings],
) -> None:
    files = pair_files(photo_png("chelsea"), photo_png("astronaut"))
    with running_client(make_settings()) as client:
        response = client.post(
            "/compare", files=files, data={"include_map": "true", "map_kind": "lpips"}
        )
    assert response.status_code == 422
    assert "SIMSCORE_ALEXNET_WEIGHTS" in response.json()["detail"]


def test_random_weights_make_every_backbone_random_and_say_so(
    make_settings: Callable[..., Settings], caplog: pytest.LogCaptureFixture
) -> None:
    settings = make_settings(weights="random", alexnet_weights=None, vgg16_weights=None)
    with running_client(settings) as client:
        entries = client.get("/scores").json()["scores"]
        assert all(entry["available"] for entry in entries)
        files = pair_files(photo_png("chelsea"), photo_png("astronaut"))
        body = client.post("/compare", files=files, data={"scores": "lpips,dists,vgg"}).json()
    assert body["model"]["weights"] == "random"
    assert {name: b["weights"] for name, b in body["model"]["backbones"].items()} == {
        "alexnet": "random",
        "vgg16": "random",
    }
    loud = [r.getMessage() for r in caplog.records if "RANDOM" in r.getMessage()]
    assert any("AlexNet" in line for line in loud) and any("VGG16" in line for line in loud)


def test_a_wrong_optional_weights_file_stops_start_up(
    make_settings: Callable[..., Settings], weights_file: Any
) -> None:
    """Absent weights are a state the service runs in; a file that is there but wrong (here
    VGG19's offered as AlexNet) is a mistake: start-up fails naming the key."""
    from app.errors import WeightsError

    with (
        pytest.raises(WeightsError, match=r"shape mismatch .* AlexNet needs"),
        running_client(make_settings(alexnet_weights=str(weights_file))),
    ):
        pass


def test_scores_needs_the_api_key_when_keys_are_set(
    make_settings: Callable[..., Settings],
) -> None:
    with running_client(make_settings(api_keys=[SecretStr(KEY)])) as client:
        assert client.get("/scores").status_code == 401
        answer = client.get("/scores", headers={"Authorization": f"Bearer {KEY}"})
        assert answer.status_code == 200
        assert len(answer.json()["scores"]) == 10
        assert client.get("/healthz").status_code == 200  # as before: no key for liveness


def test_the_openapi_document_publishes_score_name_once(client: Any) -> None:
    document = client.get("/openapi.json").json()
    schemas = document["components"]["schemas"]
    assert schemas["ScoreName"]["enum"] == [
        "vgg", "style", "ssim", "mse", "psnr", "lpips", "lpips_vgg", "dists", "flip", "ms_ssim",
    ]  # fmt: skip
    entry = schemas["ScoreEntry"]["properties"]
    assert entry["name"]["$ref"] == "#/components/schemas/ScoreName"
    assert schemas["ScoresResponse"]["properties"]["default"]["items"] == {
        "$ref": "#/components/schemas/ScoreName"
    }
    assert "lpips" in schemas["MapKind"]["enum"] and "lpips_vgg" in schemas["MapKind"]["enum"]
    assert document["paths"]["/scores"]["get"]["operationId"] == "scores"
    text = str(document)
    assert text.count("'dists', 'flip', 'ms_ssim']") == 1  # the enum is written once, in ScoreName
