"""``Tracing``: off by default with nothing started, on from the environment, errors marked on
spans, ids for the log, the caller's trace continued, a bounded shutdown."""

from __future__ import annotations

import logging
import os
import subprocess
import sys

import pytest
from opentelemetry import trace
from opentelemetry.trace import StatusCode

from app.errors import NotAnImage
from app.tracing import Tracing, continued, current_ids, error_type
from devtools.otlp import OtlpReceiver
from tests.tracing.support import EXPORT_THREAD, Held, export_threads, in_memory

TRACE_ID = "0af7651916cd43dd8448eb211c80319c"
PARENT_ID = "b7ad6b7169203331"


@pytest.fixture
def no_otel(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for name in list(os.environ):
        if name.startswith("OTEL_"):
            monkeypatch.delenv(name)
    return monkeypatch


def test_off_by_default_starts_nothing(no_otel: pytest.MonkeyPatch) -> None:
    before = export_threads()
    tracing = Tracing.from_environment()
    assert not tracing.enabled and tracing.provider is None
    with tracing.span("read") as span:
        assert not span.is_recording()
        assert current_ids() is None
    assert export_threads() == before
    tracing.shutdown()  # nothing to do


def test_an_app_without_otel_variables_loads_no_sdk_and_starts_no_thread() -> None:
    code = (
        "import sys, threading\n"
        "from app.config import Settings\n"
        "from app.main import create_app\n"
        "create_app(Settings(_env_file=None, weights='random'))\n"
        "sdk = [m for m in sys.modules if m.startswith(('opentelemetry.sdk', "
        "'opentelemetry.instrumentation', 'opentelemetry.exporter'))]\n"
        "print(sdk, [t.name for t in threading.enumerate()])\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=root, check=True
    )
    assert out.stdout.strip() == "[] ['MainThread']"


def test_on_from_the_environment_and_shut_down_within_bounds(
    no_otel: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    with OtlpReceiver() as receiver:
        no_otel.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", receiver.endpoint)
        no_otel.setenv("OTEL_SERVICE_NAME", "simscore-unit")
        with caplog.at_level(logging.INFO, logger="app.tracing.spans"):
            tracing = Tracing.from_environment()
        assert tracing.enabled
        assert f"spans exported with OTLP http/protobuf to {receiver.endpoint}" in caplog.text
        assert EXPORT_THREAD in export_threads()
        with tracing.span("read", {"simscore.body.bytes": 3}):
            pass
        tracing.shutdown()  # exports what is queued
        (span,) = receiver.named("read")
        assert span.attributes == {"simscore.body.bytes": 3}
        assert span.resource["service.name"] == "simscore-unit"


def test_a_configuration_it_cannot_honour_leaves_tracing_off_and_says_why(
    no_otel: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    no_otel.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:9")
    no_otel.setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json")
    before = export_threads()
    with caplog.at_level(logging.ERROR, logger="app.tracing.spans"):
        tracing = Tracing.from_environment()
    assert not tracing.enabled
    assert "tracing is off: OTEL_EXPORTER_OTLP_PROTOCOL=http/json" in caplog.text
    assert export_threads() == before


def test_a_failing_block_marks_its_span() -> None:
    tracing, exporter = in_memory()
    with pytest.raises(NotAnImage), tracing.span("decode"):
        raise NotAnImage("the reference is empty")
    (span,) = exporter.get_finished_spans()
    assert span.status.status_code is StatusCode.ERROR
    assert span.status.description == "NotAnImage: the reference is empty"
    assert span.attributes is not None
    assert span.attributes["error.type"] == "app.errors.NotAnImage"
    assert [event.name for event in span.events] == ["exception"]


def test_error_type_names_builtins_plainly() -> None:
    assert error_type(MemoryError()) == "MemoryError"
    assert error_type(NotAnImage("x")) == "app.errors.NotAnImage"


def test_ids_in_hex_inside_a_span() -> None:
    tracing, _ = in_memory()
    with tracing.span("read") as span:
        context = span.get_span_context()
        assert current_ids() == (f"{context.trace_id:032x}", f"{context.span_id:016x}")
    assert current_ids() is None


def test_a_callers_traceparent_is_continued() -> None:
    tracing, exporter = in_memory()
    caller = continued({"TRACEPARENT": f"00-{TRACE_ID}-{PARENT_ID}-01", "tracestate": "k=v"})
    with tracing.span("simscore compare", context=caller):
        pass
    (span,) = exporter.get_finished_spans()
    assert f"{span.context.trace_id:032x}" == TRACE_ID
    assert span.parent is not None and f"{span.parent.span_id:016x}" == PARENT_ID
    assert span.context.trace_state.get("k") == "v"


def test_no_traceparent_starts_a_new_trace() -> None:
    tracing, exporter = in_memory()
    with tracing.span("simscore compare", context=continued({"traceparent": None})):
        pass
    (span,) = exporter.get_finished_spans()
    assert span.parent is None


def test_shutdown_does_not_wait_for_a_hung_collector(caplog: pytest.LogCaptureFixture) -> None:
    from opentelemetry.sdk.trace import TracerProvider

    from app.tracing.export import CountedBatchProcessor

    exporter = Held()
    provider = TracerProvider(shutdown_on_exit=False)
    provider.add_span_processor(CountedBatchProcessor(exporter, lambda spans, reason: None))
    tracing = Tracing(provider, "held")
    with tracing.span("read"):
        pass
    with caplog.at_level(logging.WARNING, logger="app.tracing.spans"):
        tracing.shutdown(timeout_s=0.2)
    assert "were dropped" in caplog.text
    assert tracing.provider is None
    exporter.released.set()  # let the exporter thread finish


def test_off_spans_are_shared_and_inert() -> None:
    tracing = Tracing()
    with tracing.span("a") as first, tracing.span("b") as second:
        assert first is second is trace.INVALID_SPAN
