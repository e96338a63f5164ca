"""A real OTLP/gRPC trace receiver for tests: a grpcio server on loopback, on a free port,
implementing the collector's ``TraceService.Export`` from ``opentelemetry-proto``, and keeping
the spans it is sent as ``devtools/otlp.py``'s HTTP receiver keeps them (``SpanCollector``:
the same ``spans``, ``exports``, ``hold()`` / ``release()``, ``wait_for``).

It needs ``grpcio``, which ``opentelemetry-exporter-otlp-proto-grpc`` brings (the ``dev`` and
``tracing-grpc`` extras); ``devtools/otlp.py`` does not import it.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any

import grpc
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2_grpc import (
    TraceServiceServicer,
    add_TraceServiceServicer_to_server,
)

from devtools.otlp import SpanCollector, spans_of

HOST = "127.0.0.1"
STOP_GRACE_S = 5.0  # exports still in flight when the block ends get this long to finish


class _Servicer(TraceServiceServicer):
    def __init__(self, receiver: OtlpGrpcReceiver) -> None:
        self._receiver = receiver

    def Export(  # noqa: N802  (the service's method name)
        self, request: ExportTraceServiceRequest, context: Any
    ) -> ExportTraceServiceResponse:
        self._receiver._received(spans_of(request))
        return ExportTraceServiceResponse()


class OtlpGrpcReceiver(SpanCollector):
    """See the module docstring. ``with OtlpGrpcReceiver() as receiver:`` serves on a free
    port; ``receiver.endpoint`` is ``http://127.0.0.1:<port>`` (plain text: the exporter
    connects without TLS to an ``http://`` endpoint)."""

    def __init__(self) -> None:
        super().__init__()
        self._server = grpc.server(ThreadPoolExecutor(4, thread_name_prefix="otlp-grpc-receiver"))
        add_TraceServiceServicer_to_server(_Servicer(self), self._server)
        self._port: int = self._server.add_insecure_port(f"{HOST}:0")
        if not self._port:
            raise RuntimeError(f"could not bind a gRPC port on {HOST}")

    @property
    def endpoint(self) -> str:
        """The base URL, for ``OTEL_EXPORTER_OTLP_ENDPOINT``."""
        return f"http://{HOST}:{self._port}"

    def __enter__(self) -> OtlpGrpcReceiver:
        self._server.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()
        self._server.stop(STOP_GRACE_S).wait()
