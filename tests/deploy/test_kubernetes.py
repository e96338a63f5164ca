"""Kubernetes manifests validate strictly offline (kubernetes-validate) and keep their contract:
one GPU per pod, probes, hardening, selectors, settings that exist, torch threads from the CPU
limit, a compile cache volume, optional GPU node pinning, and an Ingress aligned with the app."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from tests.deploy.files import (
    CACHE_MOUNT,
    IMAGE_UID,
    K8S,
    configmap,
    container,
    k8s_objects,
    manifests,
    pod_spec,
    settings_from_env,
    venv_tool,
    yaml_documents,
)

# The oldest Kubernetes minor we promise to run on, and the newest the validator knows.
KUBERNETES_VERSIONS = ("1.30", kubernetes_validate.utils.latest_version())
INGRESS_ANNOTATION = "nginx.ingress.kubernetes.io/"


def _validate_strictly(doc: dict[str, Any], version: str, where: str) -> None:
    """Like ``kubernetes-validate --strict``, but a kind without a schema (a CRD) fails too."""
    try:
        kubernetes_validate.validate(doc, version, strict=True)
    except kubernetes_validate.SchemaNotFoundError as exc:
        pytest.fail(f"{where}: no schema, so not validated: {exc.message}")
    except kubernetes_validate.ValidationError as exc:
        pytest.fail(f"{where} ({doc['kind']}): {exc.message} at {list(exc.path)}")


def test_k8s_manifests_cover_the_deployment() -> None:
    kinds = {key.split("/")[0] for key in k8s_objects()}
    assert {
        "Deployment",
        "Service",
        "PodDisruptionBudget",
        "ConfigMap",
        "HorizontalPodAutoscaler",
        "Ingress",
    } <= kinds


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
@pytest.mark.parametrize("path", manifests(), ids=lambda p: str(p.relative_to(K8S)))
def test_k8s_manifest_validates_strictly(path: Path, version: str) -> None:
    for doc in yaml_documents(path):
        _validate_strictly(doc, version, path.name)


def test_kubernetes_validate_cli_strict_passes() -> None:
    """The command the docs give, on every manifest at once."""
    cli = venv_tool("kubernetes-validate")
    if cli is None:
        pytest.skip("kubernetes-validate is not installed (pip install kubernetes-validate)")
    result = subprocess.run(
        [cli, "--strict", "--quiet", *map(str, manifests())],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Couldn't find schema" not in result.stdout + result.stderr


def test_deployment_one_gpu_per_pod_with_requests_and_limits() -> None:
    resources = container()["resources"]
    assert resources["limits"]["nvidia.com/gpu"] == 1
    assert resources["requests"].get("nvidia.com/gpu", 1) == 1
    for kind in ("requests", "limits"):
        assert {"cpu", "memory"} <= set(resources[kind]), kind


def test_deployment_probes() -> None:
    found = container()
    port = found["ports"][0]
    assert port["containerPort"] == 8000
    assert found["readinessProbe"]["httpGet"]["path"] == "/readyz"
    # in the container, through app.probe: the connection cap's 503 is a busy pod, not a dead one
    liveness = found["livenessProbe"]["exec"]["command"]
    assert liveness[:4] == ["python", "-m", "app.probe", "/healthz"]
    startup = found["startupProbe"]
    # Weight loading plus warm-up at every SIMSCORE_WARMUP_SIDES size on a cold node.
    assert startup["periodSeconds"] * startup["failureThreshold"] >= 180


def test_deployment_runs_non_root_on_a_read_only_root() -> None:
    pod = pod_spec()
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] == IMAGE_UID
    found = container()
    security = found["securityContext"]
    assert security["readOnlyRootFilesystem"] is True
    assert security["allowPrivilegeEscalation"] is False
    assert security["capabilities"]["drop"] == ["ALL"]
    # Writable: /tmp (uploads, torch hub, CUDA JIT cache) and the compile cache.
    volumes = {volume["name"]: volume for volume in pod["volumes"]}
    mounts = {mount["mountPath"]: mount["name"] for mount in found["volumeMounts"]}
    assert "emptyDir" in volumes[mounts["/tmp"]]
    assert CACHE_MOUNT in mounts


def test_compile_cache_volume_holds_the_compile_cache_dir() -> None:
    cache_dir = configmap()["SIMSCORE_COMPILE_CACHE_DIR"]
    mounts = {mount["mountPath"]: mount["name"] for mount in container()["volumeMounts"]}
    mounted = [path for path in mounts if Path(cache_dir).is_relative_to(path)]
    assert mounted == [CACHE_MOUNT], f"{cache_dir} is not on its own volume: {mounts}"
    volume = next(v for v in pod_spec()["volumes"] if v["name"] == mounts[CACHE_MOUNT])
    # An emptyDir by default (a PersistentVolumeClaim is the documented alternative).
    assert {"emptyDir", "persistentVolumeClaim"} & volume.keys()
    # fsGroup makes the volume writable by the image's user.
    assert pod_spec()["securityContext"]["fsGroup"] == IMAGE_UID


def test_torch_threads_follow_the_cpu_limit() -> None:
    env = {item["name"]: item for item in container().get("env", [])}
    field = env["SIMSCORE_TORCH_THREADS"]["valueFrom"]["resourceFieldRef"]
    assert field["resource"] == "limits.cpu"
    assert str(field["divisor"]) == "1"
    assert field.get("containerName", container()["name"]) == container()["name"]
    # Set in one place only (env would silently win over the ConfigMap).
    assert "SIMSCORE_TORCH_THREADS" not in configmap()


def test_optional_gpu_node_fields_validate_when_uncommented() -> None:
    """The commented runtimeClassName and GPU-model nodeSelector are valid as they stand."""
    text = (K8S / "deployment.yaml").read_text()
    optional = re.compile(
        r"^(\s*)# (runtimeClassName: .+|nodeSelector:|  nvidia\.com/gpu\.\S+: .+)$"
    )
    lines = text.splitlines()
    uncommented = [optional.sub(r"\1\2", line) for line in lines]
    assert sum(a != b for a, b in zip(lines, uncommented, strict=True)) == 3
    doc = yaml.safe_load("\n".join(uncommented))
    spec = doc["spec"]["template"]["spec"]
    assert spec["runtimeClassName"] == "nvidia"
    assert set(spec["nodeSelector"]) == {"nvidia.com/gpu.product"}
    for version in KUBERNETES_VERSIONS:
        _validate_strictly(doc, version, "deployment.yaml, optional fields uncommented")


def test_selectors_match_the_pods() -> None:
    objects = k8s_objects()
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
        ref["configMapRef"]["name"] for ref in container()["envFrom"] if "configMapRef" in ref
    }
    assert env_from <= {key.split("/")[1] for key in objects if key.startswith("ConfigMap/")}


def test_configmap_keys_are_settings() -> None:
    settings_from_env(configmap())


def test_configmap_states_gpu_numerics() -> None:
    """fp32 with TF32 off is set explicitly, and nothing claims GPU scores are identical."""
    settings = settings_from_env(configmap())
    assert settings.precision == "fp32"
    assert settings.tf32 is False
    assert settings.cudnn_benchmark is False
    text = " ".join((K8S / "configmap.yaml").read_text().lower().replace("#", " ").split())
    assert "scores identical" not in text
    assert "identical to a cpu" not in text
    assert "within the tolerance in docs/deploy.md" in text


def test_ingress_routes_to_the_service() -> None:
    objects = k8s_objects()
    ingress = objects["Ingress/simscore"]["spec"]
    service_ports = {port["name"] for port in objects["Service/simscore"]["spec"]["ports"]}
    backends = [
        path["backend"]["service"] for rule in ingress["rules"] for path in rule["http"]["paths"]
    ]
    assert backends
    for backend in backends:
        assert backend["name"] == "simscore"
        assert backend["port"]["name"] in service_ports


def _ingress_annotations() -> dict[str, str]:
    annotations = k8s_objects()["Ingress/simscore"]["metadata"]["annotations"]
    return {
        key.removeprefix(INGRESS_ANNOTATION): value
        for key, value in annotations.items()
        if key.startswith(INGRESS_ANNOTATION)
    }


def test_ingress_limits_match_the_app() -> None:
    annotations = _ingress_annotations()
    settings = settings_from_env(configmap())
    # Annotation values are strings; ingress-nginx reads sizes as bytes when unitless.
    assert all(isinstance(value, str) for value in annotations.values())
    assert int(annotations["proxy-body-size"]) == settings.max_request_bytes
    assert annotations["proxy-request-buffering"] == "on"
    assert int(annotations["limit-connections"]) > 0
    assert int(annotations["limit-rps"]) > 0
    # No snippets: ingress-nginx disables them by default, and they are a known risk.
    assert not any("snippet" in key for key in annotations)


def test_ingress_controller_settings_match_the_app() -> None:
    data = k8s_objects()["ConfigMap/ingress-nginx-controller"]["data"]
    settings = settings_from_env(configmap())
    assert float(data["client-header-timeout"]) == settings.header_timeout_s
    assert float(data["client-body-timeout"]) == settings.body_timeout_s
    assert data["limit-conn-status-code"] == data["limit-req-status-code"] == "429"
    assert data["server-tokens"] == "false"
    assert data["generate-request-id"] == "true"
    assert float(data["upstream-keepalive-timeout"]) < settings.keepalive_timeout_s
