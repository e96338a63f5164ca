"""A client generated from the live ``/openapi.json`` with openapi-python-client, as a user
would generate it (the settings file in clients/openapi), round-trips the scoring endpoints
through its typed models: operation names read well and every answer parses."""

from __future__ import annotations

import importlib
import json
import shutil
import subprocess
import sys
from collections.abc import Iterator
from io import BytesIO
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from fastapi.testclient import TestClient

from devtools.images import photo_png
from devtools.servers import ROOT

CONFIG = ROOT / "clients" / "openapi" / "openapi-python-client.yaml"
PACKAGE = "simscore_api_client"
OPERATIONS = {
    "compare": "compare",
    "compare_batch": "compare",
    "compare_map": "maps",
    "healthz": "operations",
    "readyz": "operations",
    "metrics": "operations",
}


@pytest.fixture(scope="module")
def generated(
    tmp_path_factory: pytest.TempPathFactory, module_client: TestClient
) -> Iterator[ModuleType]:
    """The generated package, imported from a temporary folder."""
    folder = tmp_path_factory.mktemp("generated")
    document = folder / "openapi.json"
    document.write_text(json.dumps(module_client.get("/openapi.json").json()))
    tool = shutil.which("openapi-python-client", path=str(Path(sys.executable).parent))
    if tool is None:
        pytest.fail("openapi-python-client is a test dependency: `make install` installs it")
    run = subprocess.run(
        [tool, "generate", "--path", str(document), "--config", str(CONFIG), "--meta", "none"],
        cwd=folder,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    assert "Warning" not in run.stdout, run.stdout  # every operation and answer understood
    sys.path.insert(0, str(folder))
    try:
        yield importlib.import_module(PACKAGE)
    finally:
        sys.path.remove(str(folder))
        for name in [n for n in sys.modules if n == PACKAGE or n.startswith(PACKAGE + ".")]:
            del sys.modules[name]


@pytest.fixture(scope="module")
def module_client(weights_file: Path) -> Iterator[TestClient]:
    from devtools.servers import running_client
    from devtools.settings import settings_for

    with running_client(settings_for(weights_file)) as client:
        yield client


def _api(generated: ModuleType, module_client: TestClient) -> Any:
    client = generated.Client(base_url="http://testserver")
    client.set_httpx_client(module_client)
    return client


def _file(generated: ModuleType, data: bytes, name: str) -> Any:
    types = importlib.import_module(f"{PACKAGE}.types")
    return types.File(payload=BytesIO(data), file_name=name, mime_type="image/png")


def _operation(name: str) -> Any:
    return importlib.import_module(f"{PACKAGE}.api.{OPERATIONS[name]}.{name}")


def test_operations_have_plain_names(generated: ModuleType) -> None:
    for name in OPERATIONS:
        assert callable(_operation(name).sync_detailed)


def test_compare_round_trips_through_typed_models(
    generated: ModuleType, module_client: TestClient
) -> None:
    models = importlib.import_module(f"{PACKAGE}.models")
    body = models.CompareForm(
        reference=_file(generated, photo_png("chelsea", 48), "reference.png"),
        candidate=_file(generated, photo_png("coffee", 48), "candidate.png"),
        scores="vgg,ssim",
        size_policy=models.SizePolicy.RESIZE,
        include_map=True,
        map_kind=models.MapKind.ABS,
    )
    response = _operation("compare").sync_detailed(client=_api(generated, module_client), body=body)
    assert response.status_code == 200, response.content
    result = response.parsed
    assert isinstance(result, models.CompareResponse)
    assert result.scores.vgg is not None and result.scores.vgg > 0
    assert result.scores.ssim is not None and result.scores.ssim < 1
    assert result.scores.mse is None  # not asked for
    assert result.layers.vgg.relu5_1 >= 0
    assert result.image.width == 48 and result.image.reference.width == 48
    assert isinstance(result.map_png_base64, str)


def test_compare_batch_round_trips_items_and_errors(
    generated: ModuleType, module_client: TestClient
) -> None:
    models = importlib.import_module(f"{PACKAGE}.models")
    body = models.CompareBatchForm(
        reference=_file(generated, photo_png("chelsea", 48), "reference.png"),
        candidates=[
            _file(generated, photo_png("coffee", 48), "good.png"),
            _file(generated, b"not an image", "bad.png"),
        ],
        scores="mse",
    )
    response = _operation("compare_batch").sync_detailed(
        client=_api(generated, module_client), body=body
    )
    assert response.status_code == 200, response.content
    good, bad = response.parsed.results
    assert isinstance(good, models.CompareResponse) and good.scores.mse > 0
    assert isinstance(bad, models.BatchItemError) and bad.error.status == 400


def test_a_400_parses_as_the_error_model(generated: ModuleType, module_client: TestClient) -> None:
    models = importlib.import_module(f"{PACKAGE}.models")
    body = models.CompareForm(
        reference=_file(generated, b"", "empty.png"),
        candidate=_file(generated, photo_png("coffee", 48), "candidate.png"),
    )
    response = _operation("compare").sync_detailed(client=_api(generated, module_client), body=body)
    assert response.status_code == 400
    assert isinstance(response.parsed, models.ErrorResponse)
    assert "empty" in response.parsed.detail and response.parsed.request_id


def test_the_map_arrives_as_a_png_file(generated: ModuleType, module_client: TestClient) -> None:
    models = importlib.import_module(f"{PACKAGE}.models")
    body = models.CompareMapForm(
        reference=_file(generated, photo_png("chelsea", 48), "reference.png"),
        candidate=_file(generated, photo_png("coffee", 48), "candidate.png"),
        map_kind=models.MapKind.SSIM,
    )
    response = _operation("compare_map").sync_detailed(
        client=_api(generated, module_client), body=body
    )
    assert response.status_code == 200
    assert response.parsed.payload.read().startswith(b"\x89PNG\r\n\x1a\n")


def test_the_document_describes_thresholds_verdicts_and_the_summary(
    module_client: TestClient,
) -> None:
    schemas = module_client.get("/openapi.json").json()["components"]["schemas"]
    for form in ("CompareForm", "CompareBatchForm"):
        field = schemas[form]["properties"]["thresholds"]
        assert field["type"] == "string" and "thresholds" not in schemas[form]["required"]
        assert "lower is more alike for vgg" in field["description"]
    assert set(schemas["Verdict"]["required"]) == {"passed", "failed"}
    assert set(schemas["BatchSummary"]["required"]) == {"passed", "failed", "errors"}
    verdict = schemas["CompareResponse"]["properties"]["verdict"]
    assert {"$ref": "#/components/schemas/Verdict"} in verdict["anyOf"]
    assert "summary" in schemas["BatchResponse"]["properties"]
    assert "summary" not in schemas["BatchResponse"].get("required", [])  # absent without


def test_verdicts_and_the_summary_round_trip(
    generated: ModuleType, module_client: TestClient
) -> None:
    models = importlib.import_module(f"{PACKAGE}.models")
    api = _api(generated, module_client)
    pair = models.CompareForm(
        reference=_file(generated, photo_png("chelsea", 48), "reference.png"),
        candidate=_file(generated, photo_png("coffee", 48), "candidate.png"),
        scores="mse",
        thresholds="ssim>=0.999,mse<=1",
    )
    response = _operation("compare").sync_detailed(client=api, body=pair)
    assert response.status_code == 200, response.content
    verdict = response.parsed.verdict
    assert isinstance(verdict, models.Verdict)
    assert verdict.passed is False and verdict.failed == ["ssim>=0.999"]
    batch = models.CompareBatchForm(
        reference=_file(generated, photo_png("chelsea", 48), "reference.png"),
        candidates=[
            _file(generated, photo_png("chelsea", 48), "same.png"),
            _file(generated, b"not an image", "bad.png"),
        ],
        thresholds="psnr>=30",
    )
    response = _operation("compare_batch").sync_detailed(client=api, body=batch)
    assert response.status_code == 200, response.content
    assert isinstance(response.parsed.summary, models.BatchSummary)
    assert (response.parsed.summary.passed, response.parsed.summary.errors) == (1, 1)
    plain = models.CompareBatchForm(
        reference=_file(generated, photo_png("chelsea", 48), "reference.png"),
        candidates=[_file(generated, photo_png("coffee", 48), "other.png")],
    )
    response = _operation("compare_batch").sync_detailed(client=api, body=plain)
    types = importlib.import_module(f"{PACKAGE}.types")
    assert response.parsed.summary is types.UNSET
    assert response.parsed.results[0].verdict is None
