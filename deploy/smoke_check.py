"""Helpers for deploy/smoke.sh and deploy/compose-smoke.sh (host side, project venv).

    python deploy/smoke_check.py photos DIR          # write photograph pairs into DIR
    python deploy/smoke_check.py free-port           # print a free loopback port
    python deploy/smoke_check.py wait-ready URL SECONDS [CONTAINER]
    python deploy/smoke_check.py compare URL DIR     # POST each pair, check vs `simscore compare`

`compare` runs `simscore compare --json` on the host with the environment it is given
(SIMSCORE_WEIGHTS pointing at the same weights file the container has mounted) and requires
every score to agree within a relative 1e-4.
"""

from __future__ import annotations

import io
import json
import math
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

SCORES = ("vgg", "style", "ssim", "mse", "psnr")
REL_TOL = 1e-4
ABS_TOL = 1e-9


def _pairs(directory: Path) -> list[tuple[Path, Path]]:
    return [
        (directory / "astronaut.png", directory / "astronaut-q25.jpg"),
        (directory / "chelsea.png", directory / "chelsea-blur.png"),
    ]


def photos(directory: Path) -> None:
    """Two real photographs (scikit-image) and a degraded copy of each."""
    from PIL import Image, ImageFilter
    from skimage import data

    directory.mkdir(parents=True, exist_ok=True)
    astronaut = Image.fromarray(data.astronaut())
    astronaut.save(directory / "astronaut.png")
    buffer = io.BytesIO()
    astronaut.save(buffer, format="JPEG", quality=25)
    (directory / "astronaut-q25.jpg").write_bytes(buffer.getvalue())
    chelsea = Image.fromarray(data.chelsea())
    chelsea.save(directory / "chelsea.png")
    chelsea.filter(ImageFilter.GaussianBlur(radius=2)).save(directory / "chelsea-blur.png")


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _container_running(container: str) -> bool:
    docker = os.environ.get("DOCKER", "/usr/bin/docker")
    state = subprocess.run(  # noqa: S603 (our own docker CLI and container name)
        [docker, "inspect", "--format", "{{.State.Running}}", container],
        capture_output=True,
        text=True,
        check=False,
    )
    return state.stdout.strip() == "true"


def wait_ready(url: str, timeout_s: float, container: str | None) -> None:
    """Poll URL/readyz until it answers 200; fail early when the container has exited."""
    deadline = time.monotonic() + timeout_s
    started = time.monotonic()
    last = "no answer"
    while time.monotonic() < deadline:
        if container and not _container_running(container):
            sys.exit(f"container {container} exited before it was ready")
        try:
            response = httpx.get(f"{url}/readyz", timeout=3)
            if response.status_code == 200:
                print(f"ready after {time.monotonic() - started:.1f} s")
                return
            last = f"{response.status_code} {response.text[:200]}"
        except httpx.HTTPError as exc:
            last = repr(exc)
        time.sleep(1)
    sys.exit(f"{url}/readyz not ready after {timeout_s:.0f} s (last: {last})")


def _local_scores(reference: Path, candidate: Path) -> dict[str, float]:
    simscore = os.environ.get("SIMSCORE_BIN", str(Path(sys.executable).with_name("simscore")))
    out = subprocess.run(  # noqa: S603 (the project CLI on files this script wrote)
        [simscore, "compare", str(reference), str(candidate), "--json"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    scores: dict[str, float] = json.loads(out)["scores"]
    return scores


def compare(url: str, directory: Path) -> None:
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
    metrics = httpx.get(f"{url}/metrics", timeout=10).text
    for name in ("simscore_requests_total", "simscore_queue_depth", "simscore_ready"):
        if name not in metrics:
            sys.exit(f"/metrics lacks {name}")
    print("scores match; /metrics exports simscore_*")


def main(argv: list[str]) -> None:
    command, args = argv[0], argv[1:]
    if command == "photos":
        photos(Path(args[0]))
    elif command == "free-port":
        print(free_port())
    elif command == "wait-ready":
        wait_ready(args[0], float(args[1]), args[2] if len(args) > 2 else None)
    elif command == "compare":
        compare(args[0], Path(args[1]))
    else:
        sys.exit(f"unknown command {command!r}")


if __name__ == "__main__":
    main(sys.argv[1:])
