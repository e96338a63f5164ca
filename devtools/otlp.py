"""A real OTLP/HTTP trace receiver for tests and benchmarks: an HTTP server on loopback that
decodes what exporters send to ``/v1/traces`` with ``opentelemetry-proto`` and keeps the spans.

It can stand for a slow collector (``hold()``: every export waits until ``release()``) and
counts the exports it answered. Spans are kept flat, with hex ids, their resource attributes
and their links, which is all the tests look at. ``devtools/otlp_grpc.py`` is its OTLP/gRPC
twin: the same spans, kept the same way (``SpanCollector``).
"""

from __future__ import annotations

import gzip
import json
import threading
import time
import zlib
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span, Status

TRACES_PATH = "/v1/traces"


@dataclass(frozen=True)
class ReceivedSpan:
    """One exported span, as the receiver decoded it."""

    name: str
    trace_id: str  # 32 hex digits
    span_id: str  # 16 hex digits
    parent_span_id: str  # "" for a root span
    kind: str  # SERVER, INTERNAL, ...
    start_ns: int
    end_ns: int
    attributes: dict[str, Any]
    links: list[tuple[str, str]]  # (trace_id, span_id)
    status: str  # UNSET, OK, ERROR
    status_message: str
    events: list[str]
    resource: dict[str, Any] = field(default_factory=dict)

    @property
    def duration_ms(self) -> float:
        return (self.end_ns - self.start_ns) / 1e6


def value(any_value: AnyValue) -> Any:
    """A Python value from an OTLP ``AnyValue``."""
    kind = any_value.WhichOneof("value")
    if kind == "array_value":
        return [value(v) for v in any_value.array_value.values]
    if kind == "kvlist_value":
        return attributes(any_value.kvlist_value.values)
    return getattr(any_value, kind) if kind else None


def attributes(pairs: Any) -> dict[str, Any]:
    found: dict[str, Any] = {}
    for pair in pairs:
        assert isinstance(pair, KeyValue)
        found[pair.key] = value(pair.value)
    return found


def decode(body: bytes) -> list[ReceivedSpan]:
    """The spans of one serialized ``ExportTraceServiceRequest``."""
    request = ExportTraceServiceRequest()
    request.ParseFromString(body)
    return spans_of(request)


def spans_of(request: ExportTraceServiceRequest) -> list[ReceivedSpan]:
    """The spans of one ``ExportTraceServiceRequest``, flat."""
    spans: list[ReceivedSpan] = []
    for resource_spans in request.resource_spans:
        resource = attributes(resource_spans.resource.attributes)
        for scope_spans in resource_spans.scope_spans:
            for span in scope_spans.spans:
                spans.append(
                    ReceivedSpan(
                        name=span.name,
                        trace_id=span.trace_id.hex(),
                        span_id=span.span_id.hex(),
                        parent_span_id=span.parent_span_id.hex(),
                        kind=Span.SpanKind.Name(span.kind).removeprefix("SPAN_KIND_"),
                        start_ns=span.start_time_unix_nano,
                        end_ns=span.end_time_unix_nano,
                        attributes=attributes(span.attributes),
                        links=[(link.trace_id.hex(), link.span_id.hex()) for link in span.links],
                        status=Status.StatusCode.Name(span.status.code).removeprefix(
                            "STATUS_CODE_"
                        ),
                        status_message=span.status.message,
                        events=[event.name for event in span.events],
                        resource=resource,
                    )
                )
    return spans


class SpanCollector(ABC):
    """What a receiver keeps, whatever its protocol: the spans received, the exports answered
    and held right now, and a hold that makes it a collector that does not answer."""

    def __init__(self) -> None:
        self.spans: list[ReceivedSpan] = []
        self.exports = 0  # export requests answered
        self.waiting = 0  # export requests held right now
        self._released = threading.Event()
        self._released.set()
        self._lock = threading.Lock()

    @property
    @abstractmethod
    def endpoint(self) -> str:
        """The URL for ``OTEL_EXPORTER_OTLP_ENDPOINT``."""

    def hold(self) -> None:
        """From now on every export waits (a collector that does not answer)."""
        self._released.clear()

    def release(self) -> None:
        self._released.set()

    def _received(self, spans: list[ReceivedSpan]) -> None:
        with self._lock:
            self.waiting += 1
        self._released.wait()
        with self._lock:
            self.waiting -= 1
            self.spans.extend(spans)
            self.exports += 1

    def named(self, name: str) -> list[ReceivedSpan]:
        with self._lock:
            return [span for span in self.spans if span.name == name]

    def wait_for(
        self, done: Callable[[list[ReceivedSpan]], bool], timeout_s: float = 30
    ) -> list[ReceivedSpan]:
        """The spans received, once ``done(spans)`` holds (AssertionError after ``timeout_s``)."""
        give_up = time.monotonic() + timeout_s
        while True:
            with self._lock:
                spans = list(self.spans)
            if done(spans):
                return spans
            if time.monotonic() > give_up:
                names = sorted({span.name for span in spans})
                raise AssertionError(f"not received in {timeout_s:g} s; got {len(spans)}: {names}")
            time.sleep(0.02)

    def dump(self) -> str:
        """Every span received, as JSON (for a drawing of the trace: docs/img)."""
        with self._lock:
            return json.dumps([asdict(span) for span in self.spans], indent=1)


class OtlpReceiver(SpanCollector):
    """See the module docstring. ``with OtlpReceiver() as receiver:`` serves on a free port."""

    def __init__(self) -> None:
        super().__init__()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length", "0")))
                encoding = self.headers.get("content-encoding", "")
                if encoding == "gzip":
                    body = gzip.decompress(body)
                elif encoding == "deflate":
                    body = zlib.decompress(body)
                if self.path != TRACES_PATH:
                    self.send_error(404)
                    return
                receiver._received(decode(body))
                answer = ExportTraceServiceResponse().SerializeToString()
                self.send_response(200)
                self.send_header("content-type", "application/x-protobuf")
                self.send_header("content-length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="otlp-receiver", daemon=True
        )

    @property
    def endpoint(self) -> str:
        """The base URL, for ``OTEL_EXPORTER_OTLP_ENDPOINT``."""
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def __enter__(self) -> OtlpReceiver:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()
        self._server.shutdown()
        self._server.server_close()


@contextmanager
def receiving() -> Iterator[OtlpReceiver]:
    with OtlpReceiver() as receiver:
        yield receiver


class Traces:
    """Spans received, read as traces: requests (server spans), their children, batches."""

    def __init__(self, spans: list[ReceivedSpan]) -> None:
        self.spans = spans

    def named(self, name: str) -> list[ReceivedSpan]:
        return [span for span in self.spans if span.name == name]

    def requests(self) -> list[ReceivedSpan]:
        return [span for span in self.spans if span.kind == "SERVER"]

    def children(self, parent: ReceivedSpan, name: str | None = None) -> list[ReceivedSpan]:
        return [
            span
            for span in self.spans
            if span.trace_id == parent.trace_id
            and span.parent_span_id == parent.span_id
            and (name is None or span.name == name)
        ]

    def batches_of(self, request: ReceivedSpan) -> list[ReceivedSpan]:
        """The ``batch`` spans linked to a span of ``request``'s trace."""
        return [
            span
            for span in self.named("batch")
            if any(trace_id == request.trace_id for trace_id, _ in span.links)
        ]


def otel_env(receiver: SpanCollector, **extra: str) -> dict[str, str]:
    """The variables that send a service's spans to ``receiver``, exported promptly."""
    return {
        "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint,
        "OTEL_BSP_SCHEDULE_DELAY": "50",
        **extra,
    }
