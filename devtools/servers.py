"""The app three ways: in-process with an ASGI client, a real uvicorn server in a thread, and a
real ``simscore serve`` process. Each waits for ``/readyz`` and stops cleanly."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator, Mapping, Sequence
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
from fastapi import FastAPI
from fastapi.testclient import TestClient

from app.config import Settings
from app.main import create_app
from app.pipeline.decode import Decoder
from app.pipeline.queue import ScoringQueue
from app.service import Service
from devtools.env import child_env

ROOT = Path(__file__).resolve().parents[1]
CLI = (sys.executable, "-m", "app.cli")


def free_port() -> int:
    """A port that was free on 127.0.0.1 a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def wait_ready(
    base_url: str, timeout_s: float = 120, alive: Callable[[], bool] = lambda: True
) -> float:
    """Poll ``/readyz`` until 200 and return the seconds it took; fail fast once not ``alive``."""
    started = time.monotonic()
    last = "no answer"
    while time.monotonic() - started < timeout_s:
        if not alive():
            raise RuntimeError(f"the server stopped before it was ready (last: {last})")
        try:
            response = httpx.get(f"{base_url}/readyz", timeout=2)
            if response.status_code == 200:
                return time.monotonic() - started
            last = f"{response.status_code} {response.text[:200]}"
        except httpx.HTTPError as exc:
            last = repr(exc)
        time.sleep(0.1)
    raise RuntimeError(f"{base_url} was not ready within {timeout_s:.0f} s (last: {last})")


def service_of(app: object) -> Service:
    """The ``Service`` of an app built by ``create_app``."""
    if not isinstance(app, FastAPI):
        raise TypeError("an app built by create_app")
    service: Service = app.state.service
    return service


def queue_of(app: object) -> ScoringQueue:
    """The real batch-and-score stage of an app built by ``create_app`` (started)."""
    pipeline = service_of(app).pipeline
    if pipeline is None or not isinstance(pipeline.queue, ScoringQueue):
        raise TypeError("the app's pipeline has not started, or has a stand-in queue")
    return pipeline.queue


def decoder_of(app: object) -> Decoder:
    """The real decode stage of an app built by ``create_app`` (started)."""
    pipeline = service_of(app).pipeline
    if pipeline is None or not isinstance(pipeline.decoder, Decoder):
        raise TypeError("the app's pipeline has not started, or has a stand-in decoder")
    return pipeline.decoder


@asynccontextmanager
async def running(settings: Settings) -> AsyncIterator[tuple[FastAPI, httpx.AsyncClient]]:
    """The app with its lifespan run (model loaded, batcher started) and an ASGI client."""
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(
            transport=transport, base_url="http://simscore.test", timeout=120
        ) as client:
            yield app, client


@contextmanager
def running_client(settings: Settings) -> Iterator[TestClient]:
    """A synchronous ``TestClient`` on the app with its lifespan run."""
    with TestClient(create_app(settings)) as client:
        yield client


@contextmanager
def serve_in_thread(settings: Settings) -> Iterator[str]:
    """The app behind a real uvicorn server (the one ``simscore serve`` builds) on a free
    loopback port, in a thread of this process; yields its base URL."""
    from app.server import build_server

    server = build_server(create_app(settings), settings, host="127.0.0.1", port=free_port())
    thread = threading.Thread(target=server.run, name="uvicorn-test", daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{server.config.port}"
    try:
        wait_ready(url, alive=thread.is_alive)
        yield url
    finally:
        server.should_exit = True
        thread.join(60)


@dataclass
class ServerProcess:
    """A running ``simscore serve``: its process, base URL and log file."""

    process: subprocess.Popen[bytes]
    url: str
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self, timeout_s: float = 90) -> int:
        """SIGTERM (the service drains), SIGKILL if it does not exit in time; the exit code."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.process.kill()
        return self.process.wait()


@contextmanager
def serve_process(
    env: Mapping[str, str],
    log_path: Path,
    *,
    ready_timeout_s: float = 180,
    wait: bool = True,
    cli: Sequence[str] = CLI,
) -> Iterator[ServerProcess]:
    """``simscore serve`` (``cli``) on a free loopback port with ``SIMSCORE_*`` from ``env``
    (over this process's environment, ``PYTHONPATH`` entries of both kept), until the block ends
    (then SIGTERM). With ``wait``, the block starts once ``/readyz`` is 200."""
    port = free_port()
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [*cli, "serve", "--host", "127.0.0.1", "--port", str(port)],
            cwd=ROOT,
            env=child_env(env),
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        server = ServerProcess(process, f"http://127.0.0.1:{port}", log_path)
        try:
            if wait:
                try:
                    wait_ready(server.url, ready_timeout_s, alive=lambda: process.poll() is None)
                except RuntimeError as exc:
                    raise RuntimeError(f"{exc}\n--- server log ---\n{server.log()}") from exc
            yield server
        finally:
            server.stop()
