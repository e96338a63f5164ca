"""A real sticky CUDA error, each in a process of its own (it leaves the process's CUDA context
unusable): torch's messages are recognised as device failures, the first and every later one,
and the service answers 503 and exits 4 to be restarted. Skipped without CUDA; run on a GPU
machine with ``python -m pytest -m gpu tests/gpu``."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
import torch

from app.server import DEVICE_FAILURE
from devtools.env import child_env
from devtools.http import pair_files
from devtools.images import distort, encode, photo
from devtools.servers import ROOT, serve_process

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA"),
]

DEVICE_SIDE_ASSERT = """
import json, torch
from app.scoring.device import is_device_failure, is_out_of_memory
seen = []
for step in ("out-of-bounds index", "a later call"):
    try:
        if step == "out-of-bounds index":
            values = torch.zeros(4, device="cuda")
            values[torch.tensor([1 << 40], device="cuda")].sum().item()
        else:
            torch.ones(2, device="cuda").sum().item()
        seen.append([step, "no error", False, False])
    except Exception as exc:
        first = str(exc).strip().splitlines()[0]
        seen.append([step, type(exc).__name__ + ": " + first, is_device_failure(exc),
                     is_out_of_memory(exc)])
print(json.dumps(seen))
"""


def test_a_real_device_side_assert_is_a_device_failure() -> None:
    result = subprocess.run(
        [sys.executable, "-c", DEVICE_SIDE_ASSERT],
        cwd=ROOT,
        env=child_env({"PYTHONPATH": str(ROOT)}),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    seen = json.loads(result.stdout.strip().splitlines()[-1])
    for step, message, device_failure, out_of_memory in seen:
        assert device_failure and not out_of_memory, (step, message)


def test_the_service_on_a_failed_gpu_answers_503_and_exits_4(
    weights_file: Path, tmp_path: Path
) -> None:
    env = {
        "SIMSCORE_WEIGHTS": str(weights_file),
        "SIMSCORE_DEVICE": "cuda",
        "SIMSCORE_WARMUP_SIDES": "",
        "PYTHONPATH": str(ROOT),
    }
    faulty = (sys.executable, "-m", "tests.support.faulty_gpu", "--real")
    image = photo("astronaut", 64)
    files = pair_files(encode(image), encode(distort(image, "jpeg")))
    with serve_process(env, tmp_path / "server.log", cli=faulty) as server:
        response = httpx.post(server.url + "/compare", files=files, timeout=60)
        assert response.status_code == 503, response.text
        assert "the GPU failed (CUDA error: device-side assert" in response.json()["detail"]
        assert server.process.wait(60) == DEVICE_FAILURE
