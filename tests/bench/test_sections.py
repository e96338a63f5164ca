"""Sections with deadlines of their own (``bench/sections.py``), with real child processes on the
CPU: a hung section is killed at its deadline with what it started, and the run goes on; a
crashed one says how; rows reach the JSON file while the section still runs; a spent budget skips
what is left."""

from __future__ import annotations

import json
import os
import sys
import textwrap
from pathlib import Path

import pytest

from bench.sections import Report, Section, run_sections

PREAMBLE = """
import json, os, subprocess, sys, time
sys.path.insert(0, {root!r})
from bench.sections import emit
"""
ROOT = str(Path(__file__).resolve().parents[2])


def child(code: str) -> list[str]:
    """A section's command: Python running ``code`` with ``emit`` at hand."""
    return [sys.executable, "-c", PREAMBLE.format(root=ROOT) + textwrap.dedent(code)]


HANGS = child("""
    emit({"row": 1})
    emit({"row": 2})
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    with open(sys.argv[1] if len(sys.argv) > 1 else os.environ["SLEEPER_PID"], "w") as f:
        f.write(str(sleeper.pid))
    time.sleep(600)  # a compile that never ends, a wedged device
""")
CRASHES = child("""
    emit({"row": 1})
    raise RuntimeError("CUDA error: an illegal memory access was encountered")
""")
FINE = child("""
    for k in range(3):
        emit({"k": k, "pairs_per_s": 100.0 + k})
""")


def read(path: Path) -> dict[str, dict[str, object]]:
    sections: dict[str, dict[str, object]] = json.loads(path.read_text())["sections"]
    return sections


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return Path(f"/proc/{pid}/stat").exists() and " Z " not in Path(f"/proc/{pid}/stat").read_text()


def test_a_hung_section_is_killed_at_its_deadline_and_the_run_goes_on(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pid_file = tmp_path / "sleeper.pid"
    monkeypatch.setenv("SLEEPER_PID", str(pid_file))
    report = Report(tmp_path / "gpu.json", {"argv": ["test"]})
    sections = [
        Section("hangs", 4, HANGS),
        Section("crashes", 60, CRASHES),
        Section("fine", 60, FINE),
    ]
    run_sections(sections, report, budget_s=300, echo=lambda line: None)
    result = read(tmp_path / "gpu.json")
    assert str(result["hangs"]["status"]).startswith("timed out: killed at its deadline (4 s)")
    assert result["hangs"]["rows"] == [{"row": 1}, {"row": 2}]  # what it measured is kept
    assert not alive(int(pid_file.read_text()))  # what it started went with it
    assert result["crashes"]["status"] == "failed: exit 1"
    assert result["crashes"]["rows"] == [{"row": 1}]
    assert any("illegal memory access" in line for line in result["crashes"]["log_tail"])  # type: ignore[attr-defined]
    assert result["fine"]["status"] == "ok"
    assert [row["k"] for row in result["fine"]["rows"]] == [0, 1, 2]  # type: ignore[attr-defined]


def test_each_row_is_in_the_file_while_the_section_still_runs(tmp_path: Path) -> None:
    """The child waits to see its first row in the JSON file before it goes on: it gets there
    only if the parent wrote the file after that row."""
    path = tmp_path / "gpu.json"
    waits = child(f"""
        emit({{"row": 1}})
        for _ in range(200):
            time.sleep(0.05)
            try:
                if json.load(open({str(path)!r}))["sections"]["waits"]["rows"]:
                    break
            except (OSError, ValueError):
                pass
        else:
            sys.exit(3)
        emit({{"row": 2}})
    """)
    report = Report(path, {})
    run_sections([Section("waits", 60, waits)], report, budget_s=60, echo=lambda line: None)
    result = read(path)
    assert result["waits"]["status"] == "ok"
    assert result["waits"]["rows"] == [{"row": 1}, {"row": 2}]


def test_a_spent_budget_skips_the_sections_left(tmp_path: Path) -> None:
    report = Report(tmp_path / "gpu.json", {})
    sections = [Section("first", 12, child("time.sleep(600)")), Section("second", 60, FINE)]
    run_sections(sections, report, budget_s=15, echo=lambda line: None)
    result = read(tmp_path / "gpu.json")
    assert str(result["first"]["status"]).startswith("timed out")
    assert str(result["second"]["status"]).startswith("skipped")
    assert result["second"]["rows"] == []


def test_the_report_is_valid_json_from_the_start(tmp_path: Path) -> None:
    Report(tmp_path / "out" / "gpu.json", {"argv": ["x"]})
    assert json.loads((tmp_path / "out" / "gpu.json").read_text()) == {
        "info": {"argv": ["x"]},
        "sections": {},
    }
