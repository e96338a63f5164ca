"""``bench/gpu.py`` on the CPU, as the smoke test of a script that can only measure on a GPU:
its sections run as children and report their rows, every model row records its fp32 math (TF32
off, explicitly), the JSON and the Markdown summary land in ``--out``."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from bench.gpu import DEADLINES_S, deadlines, markdown, parse_args
from devtools.env import child_env

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_the_run_on_a_cpu_reports_every_row_with_its_math(tmp_path: Path) -> None:
    command = [sys.executable, str(ROOT / "bench" / "gpu.py"), "--device", "cpu",
               "--sections", "preflight,sweep,oom", "--sides", "32", "--batch-sizes", "1,2",
               "--modes", "fp32", "--out", str(tmp_path)]  # fmt: skip
    result = subprocess.run(
        command, cwd=ROOT, env=child_env(), capture_output=True, text=True, timeout=600
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    report = json.loads((tmp_path / "gpu.json").read_text())
    sections = report["sections"]
    assert [sections[name]["status"] for name in ("preflight", "sweep", "oom")] == ["ok"] * 3
    device, packages, photographs, *forwards = sections["preflight"]["rows"]
    assert device["gpu"] == "none (cpu)" and device["cpus"] >= 1
    assert device["process_tf32"] is False  # IEEE fp32 process-wide, set explicitly
    assert packages["fastapi"] is True
    assert {v for k, v in photographs.items() if k != "what"} == {"ok"}
    assert [row["what"] for row in forwards] == ["forward fp32 64 px, 8 images"]
    sweep = sections["sweep"]["rows"]
    assert [(row["side"], row["batch"], row["status"]) for row in sweep] == [
        (32, 1, "ok"),
        (32, 2, "ok"),
    ]
    for row in [*forwards, *sweep]:
        assert row["tf32"] is False and row["process_tf32"] is False
        assert row.get("pairs_per_s", 1) > 0
    assert sections["oom"]["rows"] == [{"status": "skipped: needs CUDA (a memory cap)"}]
    assert report["info"]["deadlines_s"] == {"preflight": 60, "sweep": 75, "oom": 45}
    assert "## sweep: ok" in (tmp_path / "gpu.md").read_text()


def test_arguments_and_deadlines() -> None:
    args = parse_args(["--quick"])
    assert args.sections == ["preflight"]
    args = parse_args(["--sections", "tests,http", "--http-clients", "16,64"])
    assert args.sections == ["tests", "http"] and args.http_clients == [16, 64]
    assert deadlines("http=200,tests=90") == {**DEADLINES_S, "http": 200.0, "tests": 90.0}
    with pytest.raises(SystemExit):
        parse_args(["--sections", "preflight,nonsense"])
    with pytest.raises(SystemExit):
        parse_args(["--modes", "fp64"])


def test_the_summary_tables_each_section() -> None:
    data = {
        "info": {"date_utc": "2026-01-01 00:00"},
        "sections": {
            "sweep": {"status": "ok", "seconds": 3.0, "rows": [{"batch": 1, "x": 0.5}]},
            "http": {"status": "timed out: killed at its deadline (170 s)", "seconds": 170.0,
                     "rows": []},
        },
    }  # fmt: skip
    text = markdown(data)
    assert "## sweep: ok (3 s)" in text and "| batch | x |" in text and "| 1 | 0.5 |" in text
    assert "## http: timed out" in text
