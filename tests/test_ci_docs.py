"""docs/ci.md keeps working as written: its loop script runs the real command line (worst exit
status, one JUnit report per golden image), its GitHub Actions and GitLab CI jobs are valid YAML
that run that script and publish the reports, and its curl gate passes and fails on a server."""

from __future__ import annotations

import os
import re
import shutil
import stat
import subprocess
import sys
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from devtools.images import distort, encode, photo
from devtools.servers import ROOT, serve_in_thread
from devtools.settings import settings_for

DOC = ROOT / "docs" / "ci.md"


def example(name: str, language: str) -> str:
    """The first ``language`` block after ``<!-- example: name -->`` in docs/ci.md."""
    match = re.search(rf"<!-- example: {name} -->\s*```{language}\n(.*?)```", DOC.read_text(), re.S)
    assert match, f"docs/ci.md lost its {name} example"
    return match.group(1)


@pytest.fixture
def workspace(tmp_path: Path, weights_file: Path) -> tuple[Path, dict[str, str]]:
    """goldens/<name>.png and renders/<name>/*, a ``simscore`` on the PATH running this tree."""
    chelsea, coffee = photo("chelsea", 64, keep_aspect=True), photo("coffee", 64, keep_aspect=True)
    for name, image in (("cat", chelsea), ("cup", coffee)):
        (tmp_path / "renders" / name).mkdir(parents=True)
        (tmp_path / "goldens").mkdir(exist_ok=True)
        (tmp_path / "goldens" / f"{name}.png").write_bytes(encode(image))
        (tmp_path / "renders" / name / "same.png").write_bytes(encode(image))
    (tmp_path / "renders" / "cat" / "jpeg.png").write_bytes(encode(distort(chelsea, "jpeg")))
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    wrapper = bin_dir / "simscore"
    wrapper.write_text(f'#!/bin/sh\nexec "{sys.executable}" -m app.cli "$@"\n')
    wrapper.chmod(wrapper.stat().st_mode | stat.S_IEXEC)
    script = tmp_path / "ci" / "compare-renders.sh"
    script.parent.mkdir()
    script.write_text(example("compare-renders", "bash"))
    python_path = os.pathsep.join([str(ROOT), str(ROOT / "clients" / "python" / "src")])
    env = {
        **os.environ,
        "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
        "PYTHONPATH": python_path,
        "SIMSCORE_WEIGHTS": str(weights_file),
        "SIMSCORE_DEVICE": "cpu",
        "SIMSCORE_WARMUP_SIDES": "",
    }
    return tmp_path, env


def run_script(folder: Path, env: dict[str, str], thresholds: str) -> int:
    done = subprocess.run(
        ["bash", "ci/compare-renders.sh"],
        cwd=folder,
        env={**env, "SIMSCORE_THRESHOLDS": thresholds},
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    return done.returncode


def counts(report: Path) -> tuple[str | None, str | None, str | None]:
    root = ET.parse(report).getroot()
    return root.get("tests"), root.get("failures"), root.get("errors")


@pytest.mark.slow
def test_the_loop_script_exits_with_the_worst_status(
    workspace: tuple[Path, dict[str, str]],
) -> None:
    folder, env = workspace
    assert run_script(folder, env, "ssim>=-1") == 0
    assert counts(folder / "reports" / "cat.xml") == ("2", "0", "0")
    assert run_script(folder, env, "mse<=0") == 1  # the JPEG of the cat fails
    assert counts(folder / "reports" / "cat.xml") == ("2", "1", "0")
    assert counts(folder / "reports" / "cup.xml") == ("1", "0", "0")
    assert (folder / "reports" / "cat.csv").read_text().count("\n") == 3
    (folder / "goldens" / "gone.png").write_bytes((folder / "goldens" / "cat.png").read_bytes())
    assert run_script(folder, env, "mse<=0") == 2  # renders/gone/ is missing: a usage error


def steps_running(job: dict[str, Any]) -> list[str]:
    return [step.get("run", "") for step in job["steps"]]


def test_the_github_actions_job_runs_the_script_and_publishes_the_report() -> None:
    workflow = yaml.safe_load(example("github-actions", "yaml"))
    (job,) = workflow["jobs"].values()
    (compare,) = [run for run in steps_running(job) if "compare-renders.sh" in run]
    assert "SIMSCORE_THRESHOLDS=" in compare and "--entrypoint bash" in compare
    (publish,) = [step for step in job["steps"] if "junit" in step.get("uses", "")]
    assert publish["if"] == "${{ !cancelled() }}"  # also when the comparison failed the job
    assert publish["with"]["report_paths"] == "reports/*.xml"
    assert job["permissions"]["checks"] == "write"


def test_the_gitlab_job_runs_the_script_and_publishes_the_report() -> None:
    (job,) = yaml.safe_load(example("gitlab-ci", "yaml")).values()
    assert job["script"] == ["bash ci/compare-renders.sh"]
    assert job["image"]["entrypoint"] == [""]  # the image's entry point is `simscore`
    assert job["variables"]["SIMSCORE_THRESHOLDS"] == "ssim>=0.9,psnr>=30"
    assert job["artifacts"]["when"] == "always"
    assert job["artifacts"]["reports"]["junit"] == "reports/*.xml"


@pytest.fixture(scope="module")
def server_url(weights_file: Path) -> Iterator[str]:
    with serve_in_thread(settings_for(weights_file)) as url:
        yield url


@pytest.mark.slow
@pytest.mark.skipif(
    shutil.which("curl") is None or shutil.which("jq") is None, reason="needs curl and jq"
)
@pytest.mark.parametrize(("candidate", "status"), [("same", 0), ("jpeg", 1)])
def test_the_curl_gate_passes_and_fails(
    tmp_path: Path, server_url: str, candidate: str, status: int
) -> None:
    image = photo("chelsea", 64, keep_aspect=True)
    home = tmp_path / "renders" / "home"
    home.mkdir(parents=True)
    (tmp_path / "goldens").mkdir()
    (tmp_path / "goldens" / "home.png").write_bytes(encode(image))
    render = encode(distort(image, "jpeg")) if candidate == "jpeg" else encode(image)
    for name in ("desktop.png", "mobile.png"):
        (home / name).write_bytes(render)
    done = subprocess.run(
        ["bash", "-c", example("service-gate", "bash")],
        cwd=tmp_path,
        env={**os.environ, "SIMSCORE_URL": server_url},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == status, done.stdout + done.stderr
    assert '"passed"' in done.stdout  # the summary is printed
