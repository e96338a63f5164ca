"""A real ``simscore serve`` process on loopback: serve, score, drain on SIGTERM."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import distort, encode, photo

pytestmark = pytest.mark.slow


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.fixture
def server(weights_file: Path, tmp_path: Path) -> Iterator[tuple[subprocess.Popen[str], str]]:
    port = free_port()
    env = {
        **os.environ,
        "SIMSCORE_WEIGHTS": str(weights_file),
        "SIMSCORE_DEVICE": "cpu",
        "SIMSCORE_WARMUP_SIDES": "64",
        "SIMSCORE_MAX_BATCH_SIZE": "2",
        "SIMSCORE_DRAIN_TIMEOUT_S": "20",
        "SIMSCORE_REQUEST_TIMEOUT_S": "20",
    }
    log = (tmp_path / "server.log").open("w")
    process = subprocess.Popen(
        [sys.executable, "-m", "app.cli", "serve", "--host", "127.0.0.1", "--port", str(port)],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        text=True,
    )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail("server exited: " + (tmp_path / "server.log").read_text())
        try:
            if httpx.get(base + "/readyz", timeout=1).status_code == 200:
                break
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    else:
        process.kill()
        pytest.fail("server never became ready: " + (tmp_path / "server.log").read_text())
    yield process, base
    if process.poll() is None:
        process.kill()
    process.wait(10)
    log.close()


def pair_files(side: int) -> dict[str, tuple[str, bytes, str]]:
    reference = photo("astronaut", side)
    return {
        "reference": ("r.png", encode(reference), "image/png"),
        "candidate": ("c.png", encode(distort(reference, "jpeg")), "image/png"),
    }


def test_real_server_scores_and_drains_on_sigterm(
    server: tuple[subprocess.Popen[str], str], tmp_path: Path
) -> None:
    process, base = server
    first = httpx.post(base + "/compare", files=pair_files(64), timeout=60)
    assert first.status_code == 200
    assert first.json()["model"]["weights"] == "file"
    assert first.headers["x-request-id"]

    # A slow request in flight when SIGTERM arrives must still be answered.
    results: list[httpx.Response] = []
    worker = threading.Thread(
        target=lambda: results.append(
            httpx.post(base + "/compare", files=pair_files(512), timeout=120)
        )
    )
    worker.start()
    time.sleep(0.5)
    process.send_signal(signal.SIGTERM)
    worker.join(120)
    assert results and results[0].status_code == 200, results
    # uvicorn re-raises the signal once it has shut down cleanly, so -SIGTERM is a clean exit.
    assert process.wait(60) in (0, -signal.SIGTERM)
    log = (tmp_path / "server.log").read_text()
    assert "simscore stopped" in log
    assert "drain timed out" not in log
