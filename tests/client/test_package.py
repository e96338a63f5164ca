"""simscore-client is its own distribution: httpx only, no torch, no server code, and it scores
pairs against a real server over HTTP."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from simscore_client import CompareResult, InvalidImageError, SimscoreClient, csv_row_of
from simscore_client.vocabulary import CSV_COLUMNS

from devtools.images import photo_png
from devtools.servers import ROOT, serve_in_thread
from devtools.settings import settings_for

CLIENT = ROOT / "clients" / "python"


def test_importing_the_client_loads_no_server_code() -> None:
    code = (
        "import sys, simscore_client\n"
        "heavy = [m for m in ('torch', 'app', 'fastapi', 'numpy', 'PIL') if m in sys.modules]\n"
        "print(heavy)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd="/"
    )
    assert out.stdout.strip() == "[]"


@pytest.mark.slow
def test_installing_the_client_brings_no_torch(tmp_path: Path) -> None:
    """What ``pip install ./clients/python`` would install into an empty environment."""
    report = tmp_path / "report.json"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--dry-run",
            "--ignore-installed",
            "--quiet",
            "--report",
            str(report),
            str(CLIENT),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    if result.returncode != 0 and "No matching distribution" in result.stderr + result.stdout:
        pytest.skip(f"PyPI is not reachable: {result.stderr[-300:]}")
    assert result.returncode == 0, result.stderr
    names = {item["metadata"]["name"].lower() for item in json.loads(report.read_text())["install"]}
    assert {"simscore-client", "httpx"} <= names
    assert not names & {"torch", "torchvision", "fastapi", "uvicorn", "simscore", "numpy"}


@pytest.fixture(scope="module")
def server_url(weights_file: Path) -> Iterator[str]:
    with serve_in_thread(settings_for(weights_file, reference_cache_size=0)) as url:
        yield url


def test_the_client_scores_against_a_real_server(server_url: str) -> None:
    with SimscoreClient(server_url) as client:
        result = client.compare(photo_png("chelsea"), photo_png("coffee"))
        items = client.compare_batch(photo_png("chelsea"), [photo_png("coffee"), b"nope"])
    assert isinstance(result, CompareResult)
    assert result.scores.vgg is not None and result.scores.vgg > 0
    assert isinstance(items[0], CompareResult)
    assert items[0].scores == result.scores
    assert isinstance(items[1], InvalidImageError)
    row = csv_row_of("coffee.png", items[0])
    assert len(row) == len(CSV_COLUMNS)
    assert row[0] == "coffee.png"
    assert csv_row_of("nope.png", items[1])[-1] == items[1].detail
