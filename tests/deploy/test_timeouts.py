"""The timeouts that depend on each other, in every place they are set.

Drain: the app refuses to start when ``SIMSCORE_DRAIN_TIMEOUT_S < SIMSCORE_REQUEST_TIMEOUT_S``;
the orchestrator must wait longer than the drain (plus Kubernetes' preStop sleep) before it
kills; the proxy must wait longer than the app's request deadline, so the app's own 504 answers.
"""

from __future__ import annotations

import pytest

from deploy import nginx_conf
from tests.deploy.files import (
    compose,
    compose_env,
    compose_seconds,
    configmap,
    container,
    k8s_objects,
    pod_spec,
    settings_from_env,
)


def test_kubernetes_drain_fits_in_the_grace_period() -> None:
    """All three relations: request <= drain; grace > preStop + drain; and drain settings valid."""
    settings = settings_from_env(configmap())  # the app's own check (drain >= request) runs here
    pre_stop = container()["lifecycle"]["preStop"]["exec"]["command"]
    assert pre_stop[0] == "sleep"
    pre_stop_s = float(pre_stop[1])
    assert pre_stop_s > 0, "endpoint removal needs time to propagate before the drain starts"
    assert settings.request_timeout_s <= settings.drain_timeout_s
    assert pod_spec()["terminationGracePeriodSeconds"] > pre_stop_s + settings.drain_timeout_s


def test_compose_drain_fits_in_the_stop_grace_period() -> None:
    settings = settings_from_env(compose_env())
    services = compose()["services"]
    assert settings.request_timeout_s <= settings.drain_timeout_s
    assert compose_seconds(services["simscore"]["stop_grace_period"]) > settings.drain_timeout_s


def test_drain_relation_is_the_apps_own_rule() -> None:
    """The relation the tests check is the one the app enforces at start-up."""
    env = {**configmap(), "SIMSCORE_DRAIN_TIMEOUT_S": "29", "SIMSCORE_REQUEST_TIMEOUT_S": "30"}
    with pytest.raises(ValueError, match="drain_timeout_s"):
        settings_from_env(env)


def test_proxies_wait_longer_than_the_app() -> None:
    nginx_read_s = nginx_conf.seconds(nginx_conf.load().one("http").value("proxy_read_timeout"))
    assert nginx_read_s > settings_from_env(compose_env()).request_timeout_s
    annotations = k8s_objects()["Ingress/simscore"]["metadata"]["annotations"]
    ingress_read_s = float(annotations["nginx.ingress.kubernetes.io/proxy-read-timeout"])
    assert ingress_read_s > settings_from_env(configmap()).request_timeout_s


def test_proxy_closes_idle_upstream_connections_first() -> None:
    upstream = nginx_conf.load().one("http").one("upstream")
    settings = settings_from_env(compose_env())
    assert nginx_conf.seconds(upstream.value("keepalive_timeout")) < settings.keepalive_timeout_s


def test_proxy_stops_gracefully_within_its_grace_period() -> None:
    proxy = compose()["services"]["proxy"]
    main = nginx_conf.load()
    shutdown_s = nginx_conf.seconds(main.value("worker_shutdown_timeout"))
    read_s = nginx_conf.seconds(main.one("http").value("proxy_read_timeout"))
    assert proxy["stop_signal"] == "SIGQUIT"  # graceful; SIGTERM is nginx's fast shutdown
    assert read_s <= shutdown_s < compose_seconds(proxy["stop_grace_period"])
