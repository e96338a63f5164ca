"""Monitoring files: every ``simscore_*`` series the Grafana dashboard, the Prometheus rules or
the autoscaler's prometheus-adapter rule queries is one the service exports (with the right
suffix for its type) and each query parses as PromQL; the scrape job authenticates."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

import pytest
import yaml

from app.observability import EXPORTED_METRICS, Metrics
from tests.deploy.files import DEPLOY, K8S, compose, k8s_objects, yaml_documents

DASHBOARD = DEPLOY / "grafana" / "dashboards" / "simscore.json"
PROMETHEUS_CONFIG = DEPLOY / "prometheus" / "prometheus.yml"
PROMETHEUS_RULES = DEPLOY / "prometheus" / "rules.yml"
ADAPTER_CONFIG = K8S / "prometheus-adapter" / "adapter-config.yaml"

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
    config_map = yaml_documents(ADAPTER_CONFIG)[0]
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
    hpa = k8s_objects()["HorizontalPodAutoscaler/simscore"]["spec"]
    served = {rule["name"]["as"] for rule in _adapter_rules()}
    for metric in hpa["metrics"]:
        assert metric["type"] == "Pods"
        assert metric["pods"]["metric"]["name"] in served
        assert float(metric["pods"]["target"]["averageValue"]) > 0


# --- scraping with API keys -------------------------------------------------------------------


def test_scrape_job_sends_the_bearer_key_from_a_file() -> None:
    job = yaml.safe_load(PROMETHEUS_CONFIG.read_text())["scrape_configs"][0]
    assert job["metrics_path"] == "/metrics"
    assert job["static_configs"][0]["targets"] == ["simscore:8000"]
    authorization = job["authorization"]
    assert authorization.get("type", "Bearer") == "Bearer"
    assert "credentials" not in authorization, "no key in a committed file"
    # The file is the compose secret mounted into the Prometheus container.
    secret = compose()["services"]["prometheus"]["secrets"][0]
    assert authorization["credentials_file"] == f"/run/secrets/{secret['target']}"


def test_pods_advertise_scraping_and_docs_say_how_it_authenticates() -> None:
    annotations = k8s_objects()["Deployment/simscore"]["spec"]["template"]["metadata"][
        "annotations"
    ]
    assert annotations["prometheus.io/scrape"] == "true"
    assert annotations["prometheus.io/path"] == "/metrics"
    docs = (DEPLOY.parent / "docs" / "deploy.md").read_text()
    assert "credentials_file" in docs
    assert "SIMSCORE_METRICS_REQUIRE_KEY" in docs
