"""The container's health probe (``python -m app.probe``): up on 200 and on the connection cap's
503 (a busy server, not a dead one), down on anything else; checked against a real server at its
connection cap, and against a stand-in HTTP server for each other answer."""

from __future__ import annotations

import http.server
import json
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import pytest

from app.config import Settings
from app.probe import BUSY_MARKER, main, probe
from devtools.servers import ROOT, free_port, serve_in_thread
from devtools.sockets import connect


@contextmanager
def answering(status: int, body: dict[str, str]) -> Iterator[int]:
    """A stand-in HTTP server on a free loopback port answering every GET with ``status``."""

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            payload = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()


@pytest.mark.parametrize(
    ("status", "detail", "up"),
    [
        (200, "ok", True),
        (503, f"512 connections are open {BUSY_MARKER}; retry shortly", True),
        (503, "the GPU failed (CUDA error: an illegal memory access was encountered)", False),
        (503, "model not ready", False),
        (500, f"{BUSY_MARKER}", False),
    ],
)
def test_the_answers_it_takes_for_up(status: int, detail: str, up: bool) -> None:
    with answering(status, {"status": "x", "detail": detail}) as port:
        assert main(["/healthz", "--port", str(port)]) == (0 if up else 1)


def test_no_answer_is_down() -> None:
    is_up, said = probe(f"http://127.0.0.1:{free_port()}/healthz", 2)
    assert not is_up and said.startswith("no answer")


def test_a_real_server_at_its_connection_cap_counts_as_up(
    make_settings: Callable[..., Settings],
) -> None:
    """The server answers the probe's connection with the cap's 503 before reading it: the
    probe must recognise that answer, or a liveness probe would restart a busy server."""
    settings = make_settings(max_connections=2, warmup_sides=[], header_timeout_s=30)
    with serve_in_thread(settings) as url:
        assert probe(url + "/healthz", 4) == (True, "200")
        held = [connect(url) for _ in range(2)]
        try:
            is_up, said = probe(url + "/healthz", 4)
        finally:
            for sock in held:
                sock.close()
    assert is_up, said
    assert said.startswith("503") and BUSY_MARKER in said


def test_it_runs_as_a_module_importing_nothing_of_the_service() -> None:
    code = (
        "import sys, runpy; sys.argv = ['probe', '/healthz', '--port', '1', '--timeout-s', '1'];"
        "\ntry:\n    runpy.run_module('app.probe', run_name='__main__')\nexcept SystemExit as e:"
        "\n    heavy = [m for m in ('torch', 'fastapi', 'uvicorn', 'numpy') if m in sys.modules]"
        "\n    print(e.code, heavy)"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert result.stdout.strip().splitlines()[-1] == "1 []", result.stdout + result.stderr
