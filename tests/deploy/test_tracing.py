"""Deployment files for tracing (README: Tracing; docs/deploy.md): compose's optional
``tracing`` profile (Jaeger, an official pinned image) wired to simscore and to Grafana, and the
Kubernetes Deployment taking the standard OTEL_* variables, the OTLP endpoint first, from an
optional ConfigMap. Tracing stays off by default in both."""

from __future__ import annotations

import json
import os
import subprocess
from typing import Any

import pytest
import yaml

from app.tracing import trace_export
from tests.deploy.files import (
    DEPLOY,
    ROOT,
    compose,
    compose_env,
    container,
    docker_compose,
    k8s_objects,
    otel_variables,
    with_defaults,
)

JAEGER_OTLP = "http://jaeger:4318"


def _jaeger() -> dict[str, Any]:
    service: dict[str, Any] = compose()["services"]["jaeger"]
    return service


def test_compose_tracing_is_off_unless_an_endpoint_is_given() -> None:
    env = compose_env()
    assert trace_export(env) is None
    on = trace_export({**env, "OTEL_EXPORTER_OTLP_ENDPOINT": JAEGER_OTLP})
    assert on is not None and on.endpoint == JAEGER_OTLP and on.exporters == ("otlp",)
    raw = compose()["services"]["simscore"]["environment"]["OTEL_EXPORTER_OTLP_ENDPOINT"]
    assert raw == "${OTEL_EXPORTER_OTLP_ENDPOINT:-}", "the operator's value passes through"
    assert env["OTEL_SERVICE_NAME"] == "simscore"


def test_compose_tracing_profile_runs_a_pinned_official_jaeger() -> None:
    jaeger = _jaeger()
    assert jaeger["profiles"] == ["tracing"]
    name, _, tag = jaeger["image"].partition(":")
    assert name == "jaegertracing/jaeger", "Jaeger v2, the official image"
    assert tag[0] == "2" and tag.count(".") == 2, f"pin a full 2.x version, not {tag!r}"
    assert "4318" in map(str, jaeger["expose"]), "OTLP/HTTP inside the project's network"
    assert jaeger["ports"] == ["127.0.0.1:16686:16686"], "the UI on loopback only"
    assert "ports" not in compose()["services"]["simscore"]


def test_grafana_has_jaeger_as_a_data_source() -> None:
    path = DEPLOY / "grafana" / "provisioning" / "datasources" / "jaeger.yml"
    (source,) = yaml.safe_load(path.read_text())["datasources"]
    assert (source["type"], source["url"]) == ("jaeger", "http://jaeger:16686")
    grafana = compose()["services"]["grafana"]
    assert "./deploy/grafana/provisioning:/etc/grafana/provisioning:ro" in grafana["volumes"]


@pytest.mark.parametrize("profiles", [["tracing"], ["monitoring", "tracing"]])
def test_docker_compose_config_with_the_tracing_profile(profiles: list[str]) -> None:
    command = docker_compose()
    for profile in profiles:
        command += ["--profile", profile]
    result = subprocess.run(
        [*command, "config", "--format", "json"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, "OTEL_EXPORTER_OTLP_ENDPOINT": JAEGER_OTLP},
    )
    assert result.returncode == 0, result.stderr
    config = json.loads(result.stdout)
    assert "jaeger" in config["services"]
    assert ("grafana" in config["services"]) is ("monitoring" in profiles)
    env = config["services"]["simscore"]["environment"]
    assert env["OTEL_EXPORTER_OTLP_ENDPOINT"] == JAEGER_OTLP


def test_pods_take_tracing_from_an_optional_configmap() -> None:
    refs = [ref["configMapRef"] for ref in container()["envFrom"] if "configMapRef" in ref]
    (tracing,) = [ref for ref in refs if ref["name"] == "simscore-tracing"]
    assert tracing["optional"] is True, "without it, pods start with tracing off"
    data = k8s_objects()["ConfigMap/simscore-tracing"]["data"]
    assert set(data) <= otel_variables()
    export = trace_export(data)
    assert export is not None and export.endpoint == data["OTEL_EXPORTER_OTLP_ENDPOINT"]


def test_pods_name_themselves_in_their_spans() -> None:
    env = container()["env"]
    names = [item["name"] for item in env]
    by_name = {item["name"]: item for item in env}
    assert by_name["OTEL_SERVICE_NAME"]["value"] == "simscore"
    attributes = with_defaults(by_name["OTEL_RESOURCE_ATTRIBUTES"]["value"])
    pairs = dict(pair.split("=", 1) for pair in attributes.split(","))
    assert {"k8s.pod.name", "k8s.namespace.name", "k8s.node.name"} <= set(pairs)
    for value in pairs.values():
        if value.startswith("$("):  # Kubernetes expands only variables defined before
            assert names.index(value[2:-1]) < names.index("OTEL_RESOURCE_ATTRIBUTES")
    assert {n for n in names if n.startswith("OTEL_")} <= otel_variables()


def test_dropped_spans_raise_an_alert() -> None:
    rules = yaml.safe_load((DEPLOY / "prometheus" / "rules.yml").read_text())
    alerts = {r["alert"]: r for g in rules["groups"] for r in g["rules"] if "alert" in r}
    assert "simscore_trace_spans_dropped_total" in alerts["SimscoreTraceSpansDropped"]["expr"]
