"""Whether tracing is on, and how, from the standard OpenTelemetry variables alone."""

from __future__ import annotations

import pytest

from app.tracing import TraceExport, TracingConfigError, trace_export

ENDPOINT = "http://collector:4318"


def test_off_without_any_variable() -> None:
    assert trace_export({}) is None


def test_off_with_only_variables_that_configure_an_exporter() -> None:
    env = {"OTEL_SERVICE_NAME": "simscore", "OTEL_TRACES_SAMPLER": "always_on"}
    assert trace_export(env) is None


def test_off_with_an_empty_endpoint() -> None:
    """Compose passes unset variables through as empty strings."""
    assert trace_export({"OTEL_EXPORTER_OTLP_ENDPOINT": "", "OTEL_TRACES_EXPORTER": ""}) is None


@pytest.mark.parametrize(
    "variable", ["OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"]
)
def test_an_endpoint_turns_otlp_over_http_on(variable: str) -> None:
    assert trace_export({variable: ENDPOINT}) == TraceExport(("otlp",), "http/protobuf", ENDPOINT)


def test_the_traces_endpoint_wins_over_the_general_one() -> None:
    env = {
        "OTEL_EXPORTER_OTLP_ENDPOINT": "http://general:4318",
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://traces:4318/v1/traces",
    }
    found = trace_export(env)
    assert found is not None and found.endpoint == "http://traces:4318/v1/traces"


@pytest.mark.parametrize(
    "off",
    [
        {"OTEL_SDK_DISABLED": "true"},
        {"OTEL_SDK_DISABLED": "TRUE"},
        {"OTEL_TRACES_EXPORTER": "none"},
        {"OTEL_TRACES_EXPORTER": "otlp,none"},
    ],
)
def test_disabled_or_none_wins_over_an_endpoint(off: dict[str, str]) -> None:
    assert trace_export({"OTEL_EXPORTER_OTLP_ENDPOINT": ENDPOINT, **off}) is None


def test_sdk_disabled_false_is_not_disabled() -> None:
    env = {"OTEL_SDK_DISABLED": "false", "OTEL_EXPORTER_OTLP_ENDPOINT": ENDPOINT}
    assert trace_export(env) is not None


def test_naming_otlp_without_an_endpoint_uses_the_specification_default() -> None:
    found = trace_export({"OTEL_TRACES_EXPORTER": "otlp"})
    assert found == TraceExport(("otlp",), "http/protobuf", "http://localhost:4318")


def test_console_needs_no_endpoint_and_combines_with_otlp() -> None:
    assert trace_export({"OTEL_TRACES_EXPORTER": "console"}) == TraceExport(("console",))
    both = trace_export({"OTEL_TRACES_EXPORTER": "otlp, console,otlp"})
    assert both is not None and both.exporters == ("otlp", "console")


def test_grpc_is_taken_from_either_protocol_variable() -> None:
    general = {"OTEL_EXPORTER_OTLP_ENDPOINT": ENDPOINT, "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"}
    found = trace_export(general)
    assert found is not None and found.protocol == "grpc"
    traces = {**general, "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL": "http/protobuf"}
    found = trace_export(traces)
    assert found is not None and found.protocol == "http/protobuf"
    default = trace_export({"OTEL_TRACES_EXPORTER": "otlp", "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"})
    assert default is not None and default.endpoint == "http://localhost:4317"


def test_an_exporter_simscore_lacks_is_refused_by_name() -> None:
    with pytest.raises(TracingConfigError, match="zipkin is not available"):
        trace_export({"OTEL_TRACES_EXPORTER": "zipkin"})


def test_http_json_is_refused_with_what_the_exporter_speaks() -> None:
    env = {"OTEL_EXPORTER_OTLP_ENDPOINT": ENDPOINT, "OTEL_EXPORTER_OTLP_PROTOCOL": "http/json"}
    with pytest.raises(TracingConfigError, match="http/protobuf or grpc"):
        trace_export(env)


def test_the_log_line_says_where_spans_go() -> None:
    export = TraceExport(("otlp", "console"), "http/protobuf", ENDPOINT)
    assert export.describe() == f"OTLP http/protobuf to {ENDPOINT} and the console (stdout)"
