"""Thresholds on POST /compare and /compare/batch: verdicts exact on real photographs (10 %
looser passes, one bound 10 % tighter fails naming exactly it, the boundary itself passes),
a batch's verdicts and summary, every bad condition a 422 with nothing scored, the server's
default and a request's own field, and answers without thresholds as before."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from app.vocabulary import DEFAULT_SCORE_NAMES, LOWER_IS_MORE_ALIKE
from devtools.images import distort, encode, photo
from devtools.servers import running_client
from devtools.settings import settings_for

REFERENCE = encode(photo("chelsea", 96, keep_aspect=True))
JPEG = encode(distort(photo("chelsea", 96, keep_aspect=True), "jpeg"))
NOISE = encode(distort(photo("chelsea", 96, keep_aspect=True), "noise"))


@pytest.fixture(scope="module")
def client(weights_file: Path) -> Iterator[TestClient]:
    # No reference cache: a pair scored twice goes through the same computation both times.
    with running_client(settings_for(weights_file, reference_cache_size=0)) as test_client:
        yield test_client


def pair_files(candidate: bytes) -> dict[str, tuple[str, bytes, str]]:
    return {
        "reference": ("golden.png", REFERENCE, "image/png"),
        "candidate": ("render.png", candidate, "image/png"),
    }


def batch_files(candidates: list[bytes]) -> list[tuple[str, tuple[str, bytes, str]]]:
    files = [("reference", ("golden.png", REFERENCE, "image/png"))]
    files += [("candidates", (f"c{i}.png", c, "image/png")) for i, c in enumerate(candidates)]
    return files


def compare(client: TestClient, candidate: bytes, **data: str) -> dict[str, Any]:
    response = client.post("/compare", files=pair_files(candidate), data=data)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def batches_scored(client: TestClient) -> float:
    app = client.app
    assert isinstance(app, FastAPI)
    value = app.state.metrics.registry.get_sample_value("simscore_batch_size_count", {})
    return 0.0 if value is None else float(value)


def bound(name: str, value: float, *, looser: bool) -> str:
    """A condition on ``name`` 10 % looser or tighter than ``value``: ``vgg<=value*1.1`` or
    ``vgg<=value*0.9``, ``ssim>=value*0.9`` or ``ssim>=value*1.1``."""
    lower = name in LOWER_IS_MORE_ALIKE
    factor = 1.1 if looser == lower else 0.9
    return f"{name}{'<=' if lower else '>='}{value * factor!r}"


@pytest.mark.parametrize("candidate", [JPEG, NOISE], ids=["jpeg", "noise"])
def test_looser_bounds_pass_and_one_tighter_bound_fails_alone(
    client: TestClient, candidate: bytes
) -> None:
    scores = compare(client, candidate)["scores"]
    assert all(scores[name] is not None and scores[name] > 0 for name in DEFAULT_SCORE_NAMES)
    looser = {name: bound(name, scores[name], looser=True) for name in DEFAULT_SCORE_NAMES}
    verdict = compare(client, candidate, thresholds=",".join(looser.values()))["verdict"]
    assert verdict == {"passed": True, "failed": []}
    for name in DEFAULT_SCORE_NAMES:
        tighter = bound(name, scores[name], looser=False)
        conditions = ",".join(tighter if n == name else looser[n] for n in DEFAULT_SCORE_NAMES)
        verdict = compare(client, candidate, thresholds=conditions)["verdict"]
        assert verdict == {"passed": False, "failed": [tighter]}, name


def test_the_boundary_value_itself_passes(client: TestClient) -> None:
    """Bounds equal to the scores, as JSON wrote them (a float's repr reads back exactly)."""
    first = compare(client, JPEG)["scores"]
    conditions = ",".join(
        f"{name}{'<=' if name in LOWER_IS_MORE_ALIKE else '>='}{first[name]!r}"
        for name in DEFAULT_SCORE_NAMES
    )
    again = compare(client, JPEG, thresholds=conditions)
    assert again["scores"] == first, "the same pair, alone, computed the same way"
    assert again["verdict"] == {"passed": True, "failed": []}
    flipped = conditions.replace("<=", "@").replace(">=", "<=").replace("@", ">=")
    assert compare(client, JPEG, thresholds=flipped)["verdict"]["passed"]  # equal both ways


def test_identical_images_meet_the_exact_bounds_and_any_psnr_floor(client: TestClient) -> None:
    """Identical images score exactly (README: Scores); psnr is infinite, written null."""
    body = compare(client, REFERENCE, thresholds="vgg<=0,style<=0,ssim>=1,mse<=0,psnr>=30")
    assert body["scores"]["psnr"] is None
    assert body["verdict"] == {"passed": True, "failed": []}
    body = compare(client, REFERENCE, thresholds="psnr>=1e300,psnr<=1000,ssim<=0.5")
    assert body["verdict"] == {"passed": False, "failed": ["psnr<=1000", "ssim<=0.5"]}


def test_failed_conditions_are_in_canonical_form_in_the_order_given(client: TestClient) -> None:
    body = compare(client, NOISE, thresholds="  PSNR >= 60 , vgg<=1e3,SSIM>=+0.999  ")
    assert body["verdict"] == {"passed": False, "failed": ["psnr>=60", "ssim>=+0.999"]}


def test_a_batch_gives_each_result_its_verdict_and_a_summary(client: TestClient) -> None:
    candidates = [REFERENCE, JPEG, b"not an image", NOISE, b""]
    alone = compare(client, JPEG)["scores"]
    conditions = f"ssim>={alone['ssim'] * 0.5!r},psnr>=40"
    response = client.post(
        "/compare/batch", files=batch_files(candidates), data={"thresholds": conditions}
    )
    assert response.status_code == 200, response.text
    body = response.json()
    verdicts = [item.get("verdict") for item in body["results"]]
    assert verdicts == [
        {"passed": True, "failed": []},  # identical: psnr infinite
        {"passed": False, "failed": ["psnr>=40"]},
        None,
        {"passed": False, "failed": ["psnr>=40"]},
        None,
    ]
    assert [item["error"]["status"] for item in body["results"] if "error" in item] == [400, 400]
    assert "verdict" not in body["results"][2]  # an error item is not a failure
    assert body["summary"] == {"passed": 1, "failed": 2, "errors": 2}


def test_a_batch_of_errors_only_still_counts_them(client: TestClient) -> None:
    response = client.post(
        "/compare/batch", files=batch_files([b"x", b"y"]), data={"thresholds": "ssim>=0.5"}
    )
    assert response.status_code == 200, response.text
    assert response.json()["summary"] == {"passed": 0, "failed": 0, "errors": 2}


@pytest.mark.parametrize(
    ("conditions", "named"),
    [
        ("blur<=0.1", "'blur<=0.1': unknown score 'blur'"),
        ("vgg<0.05", "'vgg<0.05': the operator must be <= or >="),
        ("psnr>=inf", "'psnr>=inf': the bound must be a finite number"),
        ("ssim>=nan", "'ssim>=nan': the bound must be a finite number"),
        ("vgg<=0.05,,ssim>=0.9", "condition 2 of 'vgg<=0.05,,ssim>=0.9' is empty"),
        ("ssim>=0.9,ssim>=0.8", "'ssim>=0.8' repeats a condition on ssim"),
    ],
)
@pytest.mark.parametrize("path", ["/compare", "/compare/batch"])
def test_a_bad_condition_is_a_422_naming_it_and_nothing_is_scored(
    client: TestClient, conditions: str, named: str, path: str
) -> None:
    files: Any = pair_files(JPEG) if path == "/compare" else batch_files([JPEG, NOISE])
    before = batches_scored(client)
    response = client.post(path, files=files, data={"thresholds": conditions})
    assert response.status_code == 422, response.text
    detail = response.json()["detail"]
    assert detail.startswith("thresholds: ") and named in detail, detail
    assert batches_scored(client) == before


def test_a_condition_on_a_score_not_asked_for_computes_it(client: TestClient) -> None:
    body = compare(client, JPEG, scores="mse", thresholds="vgg<=1000,ssim>=-1")
    assert body["scores"]["mse"] is not None
    assert body["scores"]["vgg"] is not None and body["scores"]["ssim"] is not None
    assert body["scores"]["style"] is None and body["scores"]["psnr"] is None
    assert body["layers"]["vgg"] is not None
    assert body["verdict"] == {"passed": True, "failed": []}
    old_name = compare(client, JPEG, metrics="ssim", thresholds="mse<=1")
    assert old_name["scores"]["mse"] is not None and old_name["scores"]["vgg"] is None


def test_without_thresholds_the_answers_are_as_before(client: TestClient) -> None:
    body = compare(client, JPEG)
    assert body["verdict"] is None
    assert list(body) == [
        "scores",
        "layers",
        "image",
        "model",
        "timing_ms",
        "reference_cached",
        "map_png_base64",
        "verdict",
    ]
    batch = client.post("/compare/batch", files=batch_files([JPEG, b"x"])).json()
    assert list(batch) == ["results"]  # no summary
    assert batch["results"][0]["verdict"] is None
    assert set(batch["results"][1]) == {"error"}
    empty = client.post("/compare/batch", files=batch_files([JPEG]), data={"thresholds": " "})
    assert list(empty.json()) == ["results"]


@pytest.fixture(scope="module")
def defaulted(weights_file: Path) -> Iterator[TestClient]:
    settings = settings_for(weights_file, thresholds="ssim>=0.999,psnr>=10")
    with running_client(settings) as test_client:
        yield test_client


def test_the_server_default_applies_when_a_request_gives_none(defaulted: TestClient) -> None:
    body = compare(defaulted, JPEG, scores="vgg")
    assert body["verdict"] == {"passed": False, "failed": ["ssim>=0.999"]}
    assert body["scores"]["ssim"] is not None  # computed for the default's condition
    batch = defaulted.post("/compare/batch", files=batch_files([REFERENCE, JPEG, b""])).json()
    assert batch["summary"] == {"passed": 1, "failed": 1, "errors": 1}


def test_a_request_s_field_replaces_the_default(defaulted: TestClient) -> None:
    replaced = compare(defaulted, JPEG, thresholds="vgg<=1000")
    assert replaced["verdict"] == {"passed": True, "failed": []}
    off = compare(defaulted, JPEG, thresholds="")
    assert off["verdict"] is None
    batch = defaulted.post("/compare/batch", files=batch_files([JPEG]), data={"thresholds": ""})
    assert list(batch.json()) == ["results"]
    assert batch.json()["results"][0]["verdict"] is None
    refused = defaulted.post("/compare", files=pair_files(JPEG), data={"thresholds": "x<=1"})
    assert refused.status_code == 422


def test_a_bad_default_refuses_to_start(weights_file: Path) -> None:
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match=r"'ssim>0\.9': the operator must be <= or >="):
        settings_for(weights_file, thresholds="vgg<=1,ssim>0.9")
    assert settings_for(weights_file, thresholds="").default_thresholds is None
    default = settings_for(weights_file, thresholds="PSNR>=30").default_thresholds
    assert default is not None and default.text == "psnr>=30"
