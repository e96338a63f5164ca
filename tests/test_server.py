"""A real ``simscore serve`` process on loopback: slow clients cut off, drain without loss on
SIGTERM, a clean exit code, a start-up failure told in one line, and a failed GPU answered with
503 and the process exiting 4 (to be restarted)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from PIL import Image

from app.config import Settings
from app.errors import DeviceFailed
from app.main import create_app
from app.server import DEVICE_FAILURE, build_server
from devtools.http import pair_files
from devtools.images import distort, encode, photo
from devtools.servers import ROOT, ServerProcess, free_port, serve_process, service_of
from devtools.sockets import connect, read_until_closed

pytestmark = pytest.mark.slow

HEADER_TIMEOUT_S = 1.5
BODY_TIMEOUT_S = 1.5


def server_env(weights_file: Path) -> dict[str, str]:
    return {
        "SIMSCORE_WEIGHTS": str(weights_file),
        "SIMSCORE_DEVICE": "cpu",
        "SIMSCORE_WARMUP_SIDES": "64",
        "SIMSCORE_MAX_BATCH_SIZE": "2",
        "SIMSCORE_REQUEST_TIMEOUT_S": "60",
        "SIMSCORE_DRAIN_TIMEOUT_S": "60",
        "SIMSCORE_HEADER_TIMEOUT_S": str(HEADER_TIMEOUT_S),
        "SIMSCORE_BODY_TIMEOUT_S": str(BODY_TIMEOUT_S),
        "SIMSCORE_DECODE_THREADS": "1",
        "SIMSCORE_MAX_SIDE": "256",
    }


@pytest.fixture(scope="module")
def server(weights_file: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """One server for the tests that leave it running."""
    log = tmp_path_factory.mktemp("server") / "server.log"
    with serve_process(server_env(weights_file), log) as process:
        yield process


@pytest.fixture
def doomed_server(weights_file: Path, tmp_path: Path) -> Iterator[ServerProcess]:
    """A server of its own for a test that stops it."""
    with serve_process(server_env(weights_file), tmp_path / "server.log") as process:
        yield process


def files(side: int) -> list[tuple[str, tuple[str, bytes, str]]]:
    reference = photo("astronaut", side)
    return pair_files(encode(reference), encode(distort(reference, "jpeg")))


def test_scores_and_tags_every_answer(server: ServerProcess) -> None:
    response = httpx.post(server.url + "/compare", files=files(64), timeout=60)
    assert response.status_code == 200
    assert response.json()["model"]["weights"] == "file"
    assert response.headers["x-request-id"]
    assert response.headers["x-content-type-options"] == "nosniff"


@pytest.mark.parametrize(
    "sent",
    [b"", b"POST /compare HTTP/1.1\r\nHost: x\r\nContent-"],
    ids=["nothing", "half-a-header"],
)
def test_slow_headers_are_cut_off(server: ServerProcess, sent: bytes) -> None:
    sock = connect(server.url)
    started = time.monotonic()
    sock.sendall(sent)
    closed_at, answer = read_until_closed(sock, HEADER_TIMEOUT_S + 5)
    sock.close()
    assert closed_at is not None
    assert HEADER_TIMEOUT_S * 0.8 <= closed_at - started < HEADER_TIMEOUT_S + 3
    if sent:
        assert answer.startswith(b"HTTP/1.1 408")


def test_a_stalled_body_is_cut_off_with_408(server: ServerProcess) -> None:
    body = b'--b\r\nContent-Disposition: form-data; name="reference"; filename="r.png"\r\n\r\n'
    head = (
        b"POST /compare HTTP/1.1\r\nHost: x\r\nContent-Type: multipart/form-data; boundary=b\r\n"
        b"Content-Length: 100000\r\n\r\n"
    )
    sock = connect(server.url)
    started = time.monotonic()
    sock.sendall(head + body)
    closed_at, answer = read_until_closed(sock, BODY_TIMEOUT_S + 5)
    sock.close()
    assert closed_at is not None
    assert answer.startswith(b"HTTP/1.1 408")
    assert b"SIMSCORE_BODY_TIMEOUT_S" in answer
    assert closed_at - started < BODY_TIMEOUT_S + 3
    assert httpx.get(server.url + "/healthz", timeout=5).status_code == 200


def test_admitted_work_is_finished_on_sigterm_and_the_exit_is_clean(
    doomed_server: ServerProcess,
) -> None:
    """Requests in flight when SIGTERM arrives (one computing, one still decoding a large
    upload) get their real answer; the process then exits 0."""
    computing = files(512)
    big = Image.fromarray(photo("astronaut")).resize((3000, 3000))
    decoding = pair_files(encode(big), encode(big.rotate(1)))
    results: dict[str, int | str] = {}

    def post(name: str, payload: list[tuple[str, tuple[str, bytes, str]]]) -> None:
        try:
            response = httpx.post(doomed_server.url + "/compare", files=payload, timeout=60)
            results[name] = response.status_code
        except httpx.HTTPError as exc:
            results[name] = repr(exc)

    first = threading.Thread(target=post, args=("computing", computing))
    first.start()
    time.sleep(1.0)  # uploaded, decoded and queued or computing by now
    second = threading.Thread(target=post, args=("decoding", decoding))
    second.start()
    time.sleep(0.3)  # its 3000 px PNGs take longer than this to upload and decode
    doomed_server.process.send_signal(signal.SIGTERM)
    first.join(90)
    second.join(90)
    assert results == {"computing": 200, "decoding": 200}
    assert doomed_server.process.wait(90) == 0
    log = doomed_server.log()
    assert "simscore stopped" in log
    assert "drain timed out" not in log


def test_a_start_up_failure_is_one_clear_line(tmp_path: Path) -> None:
    env = {
        **os.environ,
        "SIMSCORE_WEIGHTS": str(tmp_path / "missing.pth"),
        "SIMSCORE_DEVICE": "cpu",
    }
    result = subprocess.run(
        [sys.executable, "-m", "app.cli", "serve", "--port", str(free_port())],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 3  # uvicorn's code for a failed start-up
    assert "Traceback" not in output
    failures = [line for line in output.splitlines() if "start-up failed" in line]
    assert len(failures) == 1
    assert "no such file" in failures[0]
    assert "SIMSCORE_WEIGHTS" in failures[0]


def test_a_failed_gpu_answers_503_and_the_process_exits_4(
    weights_file: Path, tmp_path: Path
) -> None:
    """Every batch fails with the sticky error of an illegal memory access
    (``tests.support.faulty_gpu``): the request in flight gets a 503 saying so, and the server
    shuts down by itself and exits 4, for compose's restart policy or Kubernetes to replace it."""
    faulty = (sys.executable, "-m", "tests.support.faulty_gpu")
    with serve_process(server_env(weights_file), tmp_path / "server.log", cli=faulty) as server:
        response = httpx.post(server.url + "/compare", files=files(64), timeout=60)
        assert response.status_code == 503, response.text
        assert "the GPU failed (CUDA error: an illegal memory access" in response.json()["detail"]
        assert server.process.wait(60) == DEVICE_FAILURE == 4
    log = server.log()
    assert "shuts down (exit code 4)" in log
    assert "simscore stopped" in log


def test_the_server_exits_once_the_device_failed(make_settings: Callable[..., Settings]) -> None:
    app = create_app(make_settings())
    server = build_server(app, make_settings(), host="127.0.0.1", port=0)
    server.started = True  # as after a start
    exiting = lambda: bool(server.should_exit)  # noqa: E731 (read afresh, not narrowed)
    assert not exiting() and server.exit_code == 0
    service_of(app).device_failed(DeviceFailed("the GPU failed (an illegal memory access)"))
    assert exiting()
    assert server.exit_code == DEVICE_FAILURE
