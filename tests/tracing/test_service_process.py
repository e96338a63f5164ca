"""Tracing end to end in a real ``simscore serve`` process, configured by the standard
variables in its environment only: concurrent requests batched together, their traces and the
batches' exported to a real OTLP/HTTP receiver when the server drains, and each request's
access log line in the server's output carrying its trace and span ids."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from devtools.http import pair_files
from devtools.images import PHOTOS, distort, encode, photo
from devtools.otlp import OtlpReceiver, Traces, otel_env
from devtools.servers import serve_process

TRACE_ID = "5b8aa5a2d2c872e8321cf37308d69df2"
PARENT_ID = "051581bf3cb55c13"


def _post(url: str, index: int) -> httpx.Response:
    image = photo(PHOTOS[index % len(PHOTOS)], 64)
    files = pair_files(encode(image), encode(distort(image, "jpeg")))
    headers = {"traceparent": f"00-{TRACE_ID}-{PARENT_ID}-01"} if index == 0 else {}
    return httpx.post(f"{url}/compare", files=files, headers=headers, timeout=120)


@pytest.mark.slow
def test_a_served_process_exports_its_traces_and_logs_their_ids(
    weights_file: Path, tmp_path: Path
) -> None:
    with OtlpReceiver() as receiver:
        env = {
            "SIMSCORE_WEIGHTS": str(weights_file),
            "SIMSCORE_DEVICE": "cpu",
            "SIMSCORE_WARMUP_SIDES": "",
            "SIMSCORE_MAX_BATCH_SIZE": "8",
            "SIMSCORE_MAX_WAIT_MS": "1000",
            "SIMSCORE_DECODE_THREADS": "2",
            **otel_env(receiver, OTEL_SERVICE_NAME="simscore-process"),
        }
        with serve_process(env, tmp_path / "server.log") as server:
            with ThreadPoolExecutor(4) as pool:
                answers = list(pool.map(lambda i: _post(server.url, i), range(4)))
            assert [a.status_code for a in answers] == [200] * 4
            assert server.stop() == 0  # drains, then exports what is left
        log = server.log()
    assert "tracing on: spans exported with OTLP http/protobuf" in log
    traces = Traces(receiver.spans)
    requests = traces.requests()
    assert len(requests) == 4
    assert {span.resource["service.name"] for span in receiver.spans} == {"simscore-process"}
    for request in requests:
        assert traces.children(request, "decode") and traces.children(request, "queue")
        assert traces.batches_of(request)
    assert max(b.attributes["simscore.batch_size"] for b in traces.named("batch")) >= 2
    (continued,) = [r for r in requests if r.trace_id == TRACE_ID]
    assert continued.parent_span_id == PARENT_ID
    lines = [
        json.loads(line.split(" simscore.access ", 1)[1])
        for line in log.splitlines()
        if " simscore.access " in line
    ]
    by_request_id = {line["request_id"]: line for line in lines}
    spans_by_trace = {request.trace_id: request.span_id for request in requests}
    for answer in answers:
        line = by_request_id[answer.headers["x-request-id"]]
        assert spans_by_trace[line["trace_id"]] == line["span_id"]
