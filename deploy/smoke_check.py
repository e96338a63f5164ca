"""Helpers for deploy/smoke.sh and deploy/compose-smoke.sh (host side, project venv, run from the
repository root so that ``app`` and ``devtools`` are this checkout's).

    python -m deploy.smoke_check photos DIR          # write photograph pairs into DIR
    python -m deploy.smoke_check free-port           # print a free loopback port
    python -m deploy.smoke_check wait-ready URL SECONDS [CONTAINER]
    python -m deploy.smoke_check compare URL DIR     # POST each pair, check vs `simscore compare`
    python -m deploy.smoke_check proxy URL           # what the nginx proxy in front must do

``compare`` runs ``simscore compare --json`` on the host (``python -m app.cli``) with the
environment it is given (SIMSCORE_WEIGHTS pointing at the same weights file the container has
mounted) and requires every score to agree within a relative 1e-4. The photographs, the
distortions, ``free_port`` and ``wait_ready`` come from ``devtools``.
"""

from __future__ import annotations

import json
import math
import os
import socket
import subprocess
import sys
from pathlib import Path

import httpx

from devtools.images import distort, encode, photo
from devtools.servers import ROOT, free_port, wait_ready

SCORES = ("vgg", "style", "ssim", "mse", "psnr")
REL_TOL = 1e-4
ABS_TOL = 1e-9
# (reference, candidate): a photograph against its JPEG (quality 20) and its blurred copy.
PAIRS = (("astronaut", "jpeg"), ("chelsea", "blur"))


def _pairs(directory: Path) -> list[tuple[Path, Path]]:
    return [(directory / f"{name}.png", directory / f"{name}-{kind}.png") for name, kind in PAIRS]


def photos(directory: Path) -> None:
    """Two real photographs (scikit-image) and a distorted copy of each, as PNG."""
    directory.mkdir(parents=True, exist_ok=True)
    for name, kind in PAIRS:
        image = photo(name)
        (directory / f"{name}.png").write_bytes(encode(image))
        (directory / f"{name}-{kind}.png").write_bytes(encode(distort(image, kind)))


def _container_running(container: str) -> bool:
    docker = os.environ.get("DOCKER", "/usr/bin/docker")
    state = subprocess.run(  # noqa: S603 (our own docker CLI and container name)
        [docker, "inspect", "--format", "{{.State.Running}}", container],
        capture_output=True,
        text=True,
        check=False,
    )
    return state.stdout.strip() == "true"


def wait_until_ready(url: str, timeout_s: float, container: str | None) -> None:
    """``wait_ready``, failing early when the container has exited."""
    alive = (lambda: _container_running(container)) if container else (lambda: True)
    try:
        seconds = wait_ready(url, timeout_s, alive=alive)
    except RuntimeError as exc:
        sys.exit(str(exc))
    print(f"ready after {seconds:.1f} s")


def _local_scores(reference: Path, candidate: Path) -> dict[str, float]:
    out = subprocess.run(  # noqa: S603 (the project CLI on files this script wrote)
        [sys.executable, "-m", "app.cli", "compare", str(reference), str(candidate), "--json"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    scores: dict[str, float] = json.loads(out)["scores"]
    return scores


def compare(url: str, directory: Path, *, check_metrics: bool = True) -> None:
    """POST every pair to URL/compare and check the scores against `simscore compare`."""
    failures = 0
    for reference, candidate in _pairs(directory):
        with reference.open("rb") as ref_file, candidate.open("rb") as cand_file:
            response = httpx.post(
                f"{url}/compare",
                files={"reference": ref_file, "candidate": cand_file},
                timeout=120,
            )
        if response.status_code != 200:
            sys.exit(f"POST /compare -> {response.status_code}: {response.text[:500]}")
        body = response.json()
        served = body["scores"]
        local = _local_scores(reference, candidate)
        print(f"{reference.name} vs {candidate.name}  (model: {body.get('model')})")
        for key in SCORES:
            ok = math.isclose(served[key], local[key], rel_tol=REL_TOL, abs_tol=ABS_TOL)
            failures += not ok
            print(
                f"  {key:6s} container {served[key]:<14.8g} host {local[key]:<14.8g} "
                f"{'ok' if ok else 'MISMATCH'}"
            )
    if failures:
        sys.exit(f"{failures} score(s) differ by more than rel {REL_TOL}")
    if check_metrics:
        metrics = httpx.get(f"{url}/metrics", timeout=10).text
        for name in ("simscore_requests_total", "simscore_queue_depth", "simscore_ready"):
            if name not in metrics:
                sys.exit(f"/metrics lacks {name}")
        print("scores match; /metrics exports simscore_*")
    else:
        print("scores match")


def proxy(url: str) -> None:
    """The proxy in front answers for itself: X-Request-ID, 413 before the body, no /metrics."""
    given = "smoke-check.request-id"
    echoed = httpx.get(f"{url}/readyz", headers={"X-Request-ID": given}, timeout=10)
    if echoed.status_code != 200 or echoed.headers.get("x-request-id") != given:
        sys.exit(f"X-Request-ID not passed through: {echoed.status_code} {echoed.headers}")
    if echoed.headers.get("server", "").lower().startswith("nginx/"):
        sys.exit(f"the proxy shows its version: {echoed.headers['server']}")
    # Headers only: the answer must come before any of the declared body is sent.
    address = httpx.URL(url)
    with socket.create_connection((address.host, address.port or 80), timeout=10) as sock:
        sock.sendall(
            b"POST /compare HTTP/1.1\r\nHost: simscore\r\nContent-Length: 128000001\r\n"
            b"Content-Type: multipart/form-data; boundary=x\r\n\r\n"
        )
        answer = sock.recv(65536).decode("latin-1")
    if " 413 " not in answer.split("\r\n", 1)[0] or "SIMSCORE_MAX_REQUEST_BYTES" not in answer:
        sys.exit(f"over-size body: {answer[:300]!r}")
    metrics = httpx.get(f"{url}/metrics", timeout=10)
    if metrics.status_code != 404:
        sys.exit(f"/metrics through the proxy: {metrics.status_code}, expected 404")
    print("proxy: X-Request-ID passed through, no version, 413 before the body, /metrics hidden")


def main(argv: list[str]) -> None:
    command, args = argv[0], argv[1:]
    if command == "photos":
        photos(Path(args[0]))
    elif command == "free-port":
        print(free_port())
    elif command == "wait-ready":
        wait_until_ready(args[0], float(args[1]), args[2] if len(args) > 2 else None)
    elif command == "compare":
        compare(args[0], Path(args[1]), check_metrics="--no-metrics" not in args)
    elif command == "proxy":
        proxy(args[0])
    else:
        sys.exit(f"unknown command {command!r}")


if __name__ == "__main__":
    main(sys.argv[1:])
