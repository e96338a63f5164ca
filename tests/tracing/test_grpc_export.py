"""``OTEL_EXPORTER_OTLP_PROTOCOL=grpc`` end to end: a real ``simscore serve`` process, configured
by the standard variables only, exports a request's trace with the OTLP/gRPC exporter to a real
gRPC receiver (``devtools/otlp_grpc.py``), which decodes it: the server span ``POST /compare``
with its stages under it and the ``batch`` span linked to the request's queue span."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from devtools.http import pair_files
from devtools.images import distort, encode, photo
from devtools.otlp import Traces, otel_env
from devtools.otlp_grpc import OtlpGrpcReceiver
from devtools.servers import serve_process

TRACE_ID = "0af7651916cd43dd8448eb211c80319c"
PARENT_ID = "b7ad6b7169203331"
STAGES = ("read", "decode", "queue", "compute")


@pytest.mark.slow
def test_a_served_process_exports_a_request_over_otlp_grpc(
    weights_file: Path, tmp_path: Path
) -> None:
    with OtlpGrpcReceiver() as receiver:
        env = {
            "SIMSCORE_WEIGHTS": str(weights_file),
            "SIMSCORE_DEVICE": "cpu",
            "SIMSCORE_WARMUP_SIDES": "",
            # an http:// endpoint is plain text to the gRPC exporter: no INSECURE variable needed
            **otel_env(
                receiver,
                OTEL_EXPORTER_OTLP_PROTOCOL="grpc",
                OTEL_SERVICE_NAME="simscore-grpc",
            ),
        }
        with serve_process(env, tmp_path / "server.log") as server:
            image = photo("chelsea", 64)
            answer = httpx.post(
                f"{server.url}/compare",
                files=pair_files(encode(image), encode(distort(image, "jpeg"))),
                headers={"traceparent": f"00-{TRACE_ID}-{PARENT_ID}-01"},
                timeout=120,
            )
            assert answer.status_code == 200
            # exported while the server runs, not only by its shutdown's flush
            receiver.wait_for(lambda got: {"POST /compare", "batch"} <= {s.name for s in got})
            assert server.stop() == 0
        log = server.log()
    assert f"tracing on: spans exported with OTLP grpc to {receiver.endpoint}" in log
    spans = receiver.spans
    traces = Traces(spans)
    (request,) = traces.requests()
    assert request.name == "POST /compare"
    assert request.trace_id == TRACE_ID and request.parent_span_id == PARENT_ID
    assert request.attributes["http.status_code"] == 200
    assert request.resource["service.name"] == "simscore-grpc"
    for stage in STAGES:
        assert traces.children(request, stage), f"{stage} is not under {request.name}"
    decoded = traces.children(request, "decode")
    assert sorted(span.attributes["simscore.image.role"] for span in decoded) == [
        "candidate",
        "reference",
    ]
    (queued,) = traces.children(request, "queue")
    (batch,) = traces.batches_of(request)
    assert batch.parent_span_id == ""
    assert batch.links == [(TRACE_ID, queued.span_id)], "the batch links the request's queue span"
    assert {span.trace_id for span in spans if span.name != "batch"} == {TRACE_ID}
