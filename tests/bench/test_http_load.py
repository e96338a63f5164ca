"""The benchmark server's environment: its settings over this process's environment, and a
``PYTHONPATH`` that keeps what the caller was given (on a GPU machine, the folder holding the
service's wheels) with the repository in front."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

import devtools.servers as servers
from bench.common import ROOT
from bench.http_load import service_env
from devtools.env import child_env, python_path

WHEELS = "/tmp/site"  # where the device call installs the service's wheels
CLIENT = str(ROOT / "clients" / "python" / "src")  # this checkout's client, in front too


def test_service_env_extends_the_callers_pythonpath(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([WHEELS, "/work/clients/python/src"]))
    env = service_env(device="cuda", precision="bf16")
    expected = [str(ROOT), CLIENT, WHEELS, "/work/clients/python/src"]
    assert env["PYTHONPATH"].split(os.pathsep) == expected
    assert env["SIMSCORE_DEVICE"] == "cuda" and env["SIMSCORE_PRECISION"] == "bf16"


def test_the_server_process_gets_both(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """What ``serve_process`` hands to the ``simscore serve`` it starts."""
    monkeypatch.setenv("PYTHONPATH", WHEELS)
    seen: dict[str, str] = {}

    class Started(Exception):
        pass

    def popen(*args: Any, env: dict[str, str], **kwargs: Any) -> None:
        seen.update(env)
        raise Started

    monkeypatch.setattr(subprocess, "Popen", popen)
    with pytest.raises(Started), servers.serve_process(service_env(), tmp_path / "log"):
        pass
    assert seen["PYTHONPATH"].split(os.pathsep) == [str(ROOT), CLIENT, WHEELS]
    assert seen["SIMSCORE_WEIGHTS"] == "random"


def test_child_env_puts_a_pythonpath_in_front_never_in_place(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("PYTHONPATH", f"{WHEELS}{os.pathsep}{os.pathsep}/b")
    monkeypatch.setenv("KEPT", "yes")
    env = child_env({"PYTHONPATH": f"/a{os.pathsep}/b", "EXTRA": "1"})
    assert env["PYTHONPATH"] == os.pathsep.join(["/a", "/b", WHEELS])
    assert env["KEPT"] == "yes" and env["EXTRA"] == "1"
    assert child_env({"EXTRA": "1"})["PYTHONPATH"] == os.environ["PYTHONPATH"]
    monkeypatch.delenv("PYTHONPATH")
    assert python_path("/a") == "/a"
    assert python_path("/a", base={"PYTHONPATH": "/c"}) == os.pathsep.join(["/a", "/c"])


def test_a_child_imports_from_both(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A real child process: a module in the caller's folder and the repository both import."""
    site = tmp_path / "site"
    site.mkdir()
    (site / "only_in_the_wheels.py").write_text("WHERE = 'wheels'\n")
    monkeypatch.setenv("PYTHONPATH", str(site))
    code = "import only_in_the_wheels, bench.http_load; print(only_in_the_wheels.WHERE)"
    result = subprocess.run(
        [sys.executable, "-c", code],
        env=child_env({"PYTHONPATH": service_env()["PYTHONPATH"]}),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "wheels"
