"""The compose files: the GPU service behind the nginx proxy, the compile cache volume, the CPU
override, the monitoring profile, and ``docker compose config`` for every file combination
(where the docker CLI with its compose plugin is installed)."""

from __future__ import annotations

import json
import subprocess

import pytest

from tests.deploy.files import (
    CACHE_MOUNT,
    COMPOSE,
    COMPOSE_CPU,
    ROOT,
    compose,
    compose_env,
    docker_compose,
    settings_from_env,
)

APP_PORT = 8000
PROXY_PORT = 8080


def test_compose_gpu_service() -> None:
    service = compose()["services"]["simscore"]
    devices = service["deploy"]["resources"]["reservations"]["devices"]
    assert devices[0]["driver"] == "nvidia"
    assert devices[0]["capabilities"] == ["gpu"]
    assert service["restart"] in {"always", "unless-stopped", "on-failure"}
    assert service["healthcheck"]["test"] == ["CMD", "python", "-m", "app.probe", "/readyz"]
    assert any(volume["target"] == "/weights" for volume in service["volumes"])
    env = compose_env()
    assert env["SIMSCORE_WEIGHTS"].startswith("/weights/")
    settings_from_env(env)  # every key is a setting, every value parses


def test_compose_app_is_reached_only_through_the_proxy() -> None:
    services = compose()["services"]
    assert "ports" not in services["simscore"], "the app port must not be published"
    assert str(APP_PORT) in map(str, services["simscore"]["expose"])
    proxy = services["proxy"]
    assert proxy["ports"] == [f"${{SIMSCORE_PUBLISH:-127.0.0.1:8000}}:{PROXY_PORT}"]
    assert proxy["depends_on"]["simscore"]["condition"] == "service_healthy"
    assert "./deploy/nginx/nginx.conf:/etc/nginx/nginx.conf:ro" in proxy["volumes"]


def test_compose_proxy_uses_a_pinned_official_image() -> None:
    image = compose()["services"]["proxy"]["image"]
    default = image.removeprefix("${NGINX_IMAGE:-").removesuffix("}")
    name, _, tag = default.partition(":")
    assert name == "nginx", "the production reference is the official image"
    assert tag[0].isdigit() and tag.count(".") == 2, f"pin a full version, not {tag!r}"


@pytest.mark.parametrize("name", ["simscore", "proxy"])
def test_compose_services_are_hardened(name: str) -> None:
    service = compose()["services"][name]
    assert service["read_only"] is True
    assert service["cap_drop"] == ["ALL"]
    assert "no-new-privileges:true" in service["security_opt"]
    assert any(str(mount).startswith("/tmp:") for mount in service["tmpfs"])
    if name == "proxy":
        assert not str(service["user"]).startswith("0"), "nginx runs as a non-root user"


def test_compose_compile_cache_is_a_named_volume() -> None:
    config = compose()
    volumes = config["services"]["simscore"]["volumes"]
    cache = [v for v in volumes if v["target"] == CACHE_MOUNT]
    assert len(cache) == 1 and cache[0]["type"] == "volume"
    assert cache[0]["source"] in config["volumes"]
    cache_dir = compose_env()["SIMSCORE_COMPILE_CACHE_DIR"]
    assert cache_dir.startswith(CACHE_MOUNT + "/")


def test_compose_cpu_override_drops_the_gpu() -> None:
    service = compose(COMPOSE_CPU)["services"]["simscore"]
    assert service["deploy"] == {"!reset": {}}
    assert service["environment"]["SIMSCORE_DEVICE"] == "cpu"
    assert set(compose(COMPOSE_CPU)["services"]) == {"simscore"}, "the proxy stays as it is"


def test_compose_monitoring_profile() -> None:
    config = compose()
    services = config["services"]
    for name in ("prometheus", "grafana"):
        assert services[name]["profiles"] == ["monitoring"]
        for volume in services[name]["volumes"]:
            source = volume.split(":")[0]
            if source.startswith("./"):
                assert (ROOT / source).exists(), f"{name} mounts missing {source}"
    secrets = {secret["source"] for secret in services["prometheus"]["secrets"]}
    assert secrets <= config["secrets"].keys()


FILE_COMBINATIONS = [
    (["docker-compose.yml"], None, True),
    (["docker-compose.yml"], "monitoring", True),
    (["docker-compose.yml", "docker-compose.cpu.yml"], None, False),
    (["docker-compose.yml", "docker-compose.cpu.yml"], "monitoring", False),
]


@pytest.mark.parametrize(
    ("files", "profile", "gpu"),
    FILE_COMBINATIONS,
    ids=["gpu", "gpu+monitoring", "cpu", "cpu+monitoring"],
)
def test_docker_compose_config(files: list[str], profile: str | None, gpu: bool) -> None:
    command = docker_compose()
    for name in files:
        command += ["-f", name]
    if profile:
        command += ["--profile", profile]
    result = subprocess.run(
        [*command, "config", "--format", "json"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    config = json.loads(result.stdout)
    service = config["services"]["simscore"]
    reservations = service.get("deploy", {}).get("resources", {}).get("reservations", {})
    assert bool(reservations.get("devices")) is gpu
    assert service["environment"]["SIMSCORE_DEVICE"] == ("cuda" if gpu else "cpu")
    assert ({"prometheus", "grafana"} <= config["services"].keys()) is (profile == "monitoring")
    proxy = config["services"]["proxy"]
    assert [(p["host_ip"], p["published"], p["target"]) for p in proxy["ports"]] == [
        ("127.0.0.1", "8000", PROXY_PORT)
    ]
    assert "ports" not in service


def test_compose_files_are_the_documented_ones() -> None:
    assert COMPOSE.exists() and COMPOSE_CPU.exists()
