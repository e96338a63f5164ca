"""The SDK pipeline simscore exports with: drops counted (a full queue, a failed export), never
waited for; the resource and sampler from the environment; grpc only where installed."""

from __future__ import annotations

import sys
from collections import Counter

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SpanExportResult

from app import __version__
from app.tracing import TraceExport, TracingConfigError
from app.tracing.export import GRPC_EXPORTER, CountedBatchProcessor, build_provider, resource
from tests.tracing.support import Held


def _provider(exporter: Held, dropped: Counter[str]) -> TracerProvider:
    def count(spans: int, reason: str) -> None:
        dropped[reason] += spans

    provider = TracerProvider(shutdown_on_exit=False)
    provider.add_span_processor(CountedBatchProcessor(exporter, count))
    return provider


def test_a_full_queue_drops_and_counts_without_waiting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_BSP_MAX_QUEUE_SIZE", "4")
    monkeypatch.setenv("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", "1")
    monkeypatch.setenv("OTEL_BSP_SCHEDULE_DELAY", "5")
    exporter, dropped = Held(), Counter[str]()
    provider = _provider(exporter, dropped)
    tracer = provider.get_tracer("test")
    tracer.start_span("first").end()
    assert exporter.entered.wait(10), "the exporter never got the first span"
    for i in range(10):  # the collector hangs: these end at once, 4 queued, 6 dropped
        tracer.start_span(f"span {i}").end()
    assert dropped == Counter({"queue_full": 6})
    exporter.released.set()
    provider.shutdown()
    assert len(exporter.exported) == 5, "every span not counted as dropped is exported"


@pytest.mark.parametrize("result", [SpanExportResult.FAILURE, None], ids=["failure", "raises"])
def test_failed_exports_are_counted(result: SpanExportResult | None) -> None:
    exporter, dropped = Held(result), Counter[str]()
    exporter.released.set()
    provider = _provider(exporter, dropped)
    tracer = provider.get_tracer("test")
    for i in range(3):
        tracer.start_span(f"span {i}").end()
    provider.shutdown()
    assert dropped == Counter({"export_failed": 3})


def test_unsampled_spans_are_neither_exported_nor_counted(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("OTEL_TRACES_SAMPLER", "always_off")
    exporter, dropped = Held(), Counter[str]()
    exporter.released.set()
    provider = _provider(exporter, dropped)
    provider.get_tracer("test").start_span("unsampled").end()
    provider.shutdown()
    assert exporter.exported == [] and not dropped


def test_the_resource_names_simscore_unless_the_environment_does(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("OTEL_SERVICE_NAME", raising=False)
    monkeypatch.delenv("OTEL_RESOURCE_ATTRIBUTES", raising=False)
    default = resource().attributes
    assert default["service.name"] == "simscore"
    assert default["service.version"] == __version__
    monkeypatch.setenv("OTEL_SERVICE_NAME", "scorer-eu")
    monkeypatch.setenv("OTEL_RESOURCE_ATTRIBUTES", "deployment.environment=test,service.version=9")
    given = resource().attributes
    assert given["service.name"] == "scorer-eu"
    assert given["service.version"] == "9"
    assert given["deployment.environment"] == "test"


def test_the_service_name_may_come_from_the_resource_attributes(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("OTEL_SERVICE_NAME", raising=False)
    monkeypatch.setenv("OTEL_RESOURCE_ATTRIBUTES", "service.name=from-attributes")
    assert resource().attributes["service.name"] == "from-attributes"


def test_grpc_without_its_exporter_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, GRPC_EXPORTER, None)  # its import fails, as if not installed
    export = TraceExport(("otlp",), "grpc", "http://localhost:4317")
    with pytest.raises(TracingConfigError, match="opentelemetry-exporter-otlp-proto-grpc"):
        build_provider(export, lambda spans, reason: None)
