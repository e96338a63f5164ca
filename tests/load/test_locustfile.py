"""The load test's traffic and checks: real responses pass, broken ones fail, locust loads it.

The checks live in ``load/traffic.py`` (no locust import: importing locust monkey-patches
the standard library of the whole test process); the locustfile itself is loaded by locust in a
subprocess, and one slow test runs the whole ``make load`` driver for a few seconds.
"""

from __future__ import annotations

import copy
import json
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from app.config import Settings
from app.main import create_app
from app.models.vgg import TAP_NAMES
from app.scores.perceptual import VGG_TAP_WEIGHTS
from devtools.env import child_env
from load import traffic
from load.traffic import BadResponse, Expect, check_compare

ROOT = Path(__file__).resolve().parents[2]
LOAD = ROOT / "load"
SCALE = 0.15  # 224 -> 34 px, 512 -> 77 px: real photographs, fast on a CPU


@pytest.fixture(scope="module")
def payloads() -> traffic.Traffic:
    return traffic.build_traffic(SCALE, dashboard_candidates=3)


@pytest.fixture
def service(make_settings: Callable[..., Settings]) -> Iterator[TestClient]:
    with TestClient(create_app(make_settings())) as client:
        yield client


def post_pair(client: TestClient, pair: traffic.Pair) -> Any:
    response = client.post(
        "/compare", files={"reference": pair.reference, "candidate": pair.candidate}
    )
    assert response.status_code == 200, response.text
    return response.json()


def test_constants_match_the_service() -> None:
    assert pytest.approx(VGG_TAP_WEIGHTS) == traffic.VGG_TAP_WEIGHTS
    assert traffic.TAP_NAMES == TAP_NAMES


def test_payloads_have_the_promised_sizes() -> None:
    full = traffic.build_traffic(1.0, dashboard_candidates=2)
    assert {p.expect.width for p in full.square_224} == {224}
    assert {p.expect.width for p in full.square_512} == {512}
    assert all(p.expect.candidate_resized for p in full.mixed_sizes)
    assert {(p.expect.width, p.expect.height) for p in full.mixed_sizes} == {
        (600, 400),
        (451, 300),
        (640, 427),
    }
    assert len(full.dashboard.candidates) == 2


def test_real_responses_pass_every_check(service: TestClient, payloads: traffic.Traffic) -> None:
    book = traffic.ScoreBook()
    groups = (payloads.square_224, payloads.square_512, payloads.mixed_sizes, payloads.identical)
    for pair in (group[0] for group in groups):
        book.check(pair.key, check_compare(post_pair(service, pair), pair.expect))
    again = payloads.square_224[0]
    book.check(again.key, check_compare(post_pair(service, again), again.expect))

    board = payloads.dashboard
    field = traffic.batch_field(service.get("/openapi.json").json())
    if field is not None:
        files = [("reference", board.reference)] + [(field, c) for c in board.candidates]
        response = service.post("/compare/batch", files=files)
        assert response.status_code == 200, response.text
        results = traffic.check_batch(response.json(), board.expect, len(board.candidates))
        assert len(results) == len(board.candidates)
    traffic.check_health(service.get("/healthz").json(), "ok")
    traffic.check_health(service.get("/readyz").json(), "ready")


@pytest.fixture(scope="module")
def good_body() -> dict[str, Any]:
    """A self-consistent body shaped like the API's example."""
    vgg_layers = dict(zip(TAP_NAMES, (0.8, 0.6, 0.4, 0.3, 0.1), strict=True))
    style_layers = dict(zip(TAP_NAMES, (1e-3, 2e-3, 3e-3, 4e-3, 5e-3), strict=True))
    return {
        "scores": {
            "vgg": sum(w * v for w, v in zip(VGG_TAP_WEIGHTS, vgg_layers.values(), strict=True)),
            "style": sum(style_layers.values()),
            "ssim": 0.87,
            "mse": 0.002,
            "psnr": 26.989700043360187,
        },
        "layers": {"vgg": vgg_layers, "style": style_layers},
        "image": {"width": 224, "height": 224, "candidate_resized": False, "resized": False},
        "model": {"name": "vgg19", "weights": "random"},
        "timing_ms": {"batch_size": 3},
        "reference_cached": False,
    }


EXPECT = Expect(width=224, height=224)


def _broken(body: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    out = copy.deepcopy(body)
    *parents, leaf = path.split(".")
    target = out
    for part in parents:
        target = target[part]
    if value is KeyError:
        del target[leaf]
    else:
        target[leaf] = value
    return out


def test_good_body_passes(good_body: dict[str, Any]) -> None:
    scores = check_compare(good_body, EXPECT)
    assert scores["ssim"] == 0.87


@pytest.mark.parametrize(
    ("path", "value", "why"),
    [
        ("scores.vgg", KeyError, "scores.vgg"),
        ("scores.vgg", "0.5", "not a finite number"),
        ("scores.ssim", float("nan"), "not a finite number"),
        ("scores.ssim", 1.5, "out of range"),
        ("scores.vgg", 0.123, "weighted sum"),
        ("scores.style", 0.5, "sum of its layers"),
        ("scores.psnr", 30.0, "does not match mse"),
        ("scores.psnr", None, "does not match mse"),
        ("layers.vgg.relu5_1", KeyError, "layers.vgg has"),
        ("image.width", 512, "expected"),
        ("image.candidate_resized", True, "candidate_resized"),
        ("model.name", "resnet", "model is"),
        ("timing_ms.batch_size", 0, "batch_size"),
        ("reference_cached", "yes", "reference_cached"),
        ("scores", [], "not a JSON object"),
    ],
)
def test_broken_bodies_fail(good_body: dict[str, Any], path: str, value: Any, why: str) -> None:
    with pytest.raises(BadResponse, match=why):
        check_compare(_broken(good_body, path, value), EXPECT)


def test_identical_pair_must_score_perfectly(good_body: dict[str, Any]) -> None:
    perfect_pixels = _broken(_broken(good_body, "scores.mse", 0.0), "scores.psnr", None)
    with pytest.raises(BadResponse, match="identical"):
        check_compare(perfect_pixels, Expect(224, 224, identical=True))
    with pytest.raises(BadResponse, match="mse 0"):
        check_compare(perfect_pixels, EXPECT)


def test_batch_item_errors_fail(good_body: dict[str, Any]) -> None:
    error = {"error": {"status": 400, "detail": "not an image"}}
    with pytest.raises(BadResponse, match="candidate 1 failed"):
        traffic.check_batch({"results": [good_body, error]}, EXPECT, 2)
    with pytest.raises(BadResponse, match="list of 3"):
        traffic.check_batch({"results": [good_body]}, EXPECT, 3)
    assert len(traffic.check_batch({"results": [good_body] * 2}, EXPECT, 2)) == 2


def test_backpressure_needs_detail_and_retry_after() -> None:
    traffic.check_backpressure({"Retry-After": "1"}, {"detail": "the queue is full"})
    with pytest.raises(BadResponse, match="Retry-After"):
        traffic.check_backpressure({}, {"detail": "the queue is full"})
    with pytest.raises(BadResponse, match="no detail"):
        traffic.check_backpressure({"retry-after": "1"}, {"detail": ""})
    with pytest.raises(BadResponse, match="not a JSON object"):
        traffic.check_backpressure({"retry-after": "1"}, None)


def test_health_checks() -> None:
    traffic.check_health({"status": "ok"}, "ok")
    with pytest.raises(BadResponse):
        traffic.check_health({"status": "loading"}, "ready")


def test_score_book_catches_drift() -> None:
    book = traffic.ScoreBook()
    first = {"vgg": 1.0, "style": 0.1, "ssim": 0.5, "mse": 0.01, "psnr": 20.0}
    book.check("k", first)
    book.check("k", {**first, "vgg": 1.0 + 1e-6})
    with pytest.raises(BadResponse, match="vgg"):
        book.check("k", {**first, "vgg": 1.01})
    with pytest.raises(BadResponse, match="mse"):
        book.check("k", {**first, "mse": 0.01 + 1e-12})


def test_pairs_per_task() -> None:
    assert traffic.pairs_per_task({"a": 3, "b": 1}, {"a": 1, "b": 8}) == pytest.approx(11 / 4)


def test_batch_field_discovery() -> None:
    assert traffic.batch_field({"paths": {}}) is None
    assert traffic.batch_field("not a document") is None


def _env() -> dict[str, str]:
    return child_env({"SIMSCORE_LOAD_SCALE": str(SCALE), "PYTHONPATH": str(ROOT)})


def test_locust_loads_the_locustfile() -> None:
    locust = Path(sys.executable).parent / "locust"
    result = subprocess.run(
        [str(locust), "-f", str(LOAD / "locustfile.py"), "--list"],
        capture_output=True,
        text=True,
        timeout=60,
        env=_env(),
        cwd=ROOT,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "SimscoreUser" in result.stdout


@pytest.mark.slow
def test_load_driver_end_to_end(tmp_path: Path) -> None:
    """``make load`` in miniature: a real server on loopback, locust for a few seconds, a
    summary with pairs scored, no failure and no 5xx, and the server stopped."""
    command = [sys.executable, str(LOAD / "run_load.py"), "--users", "2", "--duration-s", "6"]
    command += ["--scale", str(SCALE), "--results", str(tmp_path), "--weights", "random"]
    command += ["--server-env", "SIMSCORE_WARMUP_SIDES="]
    result = subprocess.run(
        command,
        capture_output=True,
        text=True,
        timeout=180,
        env=_env(),
        cwd=ROOT,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    (summary_path,) = tmp_path.glob("load-*/summary.json")
    summary = json.loads(summary_path.read_text())
    (step,) = summary["results"]
    assert summary["passed"]
    assert step["pairs"] > 0
    assert step["failures"] == 0
    assert step["server_5xx"] == 0
    assert step["mean_batch_size"] >= 1
    assert (summary_path.parent / "locust_u2.html").is_file()
    assert "pairs/s" in result.stdout
