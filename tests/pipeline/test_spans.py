"""The pipeline's spans (``app.pipeline.spans``) through the real batch-and-score stage: each
pair's ``queue`` and ``compute`` spans in its request's trace, one ``batch`` span per forward
pass linked to the pairs it scored, split halves as its children, and the spans of pairs that
never reach a batch ended with why."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator

import pytest
import torch
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode

from app.config import Settings
from app.errors import Overloaded
from app.pipeline.queue import ScoringQueue
from app.pipeline.spans import BatchSpans, image_format
from app.scoring import PairRequest, Scorer
from app.tracing import Tracing
from devtools.images import encode, photo
from tests.tracing.support import in_memory


@pytest.fixture
def traced() -> tuple[Tracing, InMemorySpanExporter]:
    return in_memory()


@pytest.fixture
def queue(
    make_settings: Callable[..., Settings],
    scorer: Scorer,
    traced: tuple[Tracing, InMemorySpanExporter],
) -> Iterator[ScoringQueue]:
    settings = make_settings(max_wait_ms=200, queue_size=2)
    stage = ScoringQueue(settings, scorer, tracing=traced[0])
    stage.start()
    yield stage
    stage.close()


def _pair(seed: int) -> PairRequest:
    generator = torch.Generator().manual_seed(seed)
    image = torch.rand(3, 32, 32, generator=generator)
    return PairRequest(image, image.flip(-1))


def _named(exporter: InMemorySpanExporter, name: str) -> list[ReadableSpan]:
    return [span for span in exporter.get_finished_spans() if span.name == name]


def _ids(span: ReadableSpan) -> tuple[int, int]:
    return span.context.trace_id, span.context.span_id


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "WEBP", "GIF", "BMP", "TIFF"])
def test_the_format_is_read_from_the_signature(fmt: str) -> None:
    assert image_format(encode(photo("astronaut", 32), fmt)) == fmt


def test_anything_else_is_unknown() -> None:
    assert image_format(b"<svg/>") == image_format(b"") == "unknown"


async def test_a_batch_links_the_pairs_it_scored_and_each_pair_has_queue_then_compute(
    queue: ScoringQueue, traced: tuple[Tracing, InMemorySpanExporter]
) -> None:
    tracing, exporter = traced
    with tracing.span("POST /compare") as request:
        answers = queue.submit_many([_pair(0), _pair(1)], deadline=time.monotonic() + 60)
        await asyncio.gather(*answers)
    (batch,) = _named(exporter, "batch")
    queued, computed = _named(exporter, "queue"), _named(exporter, "compute")
    assert len(queued) == len(computed) == 2
    request_ids = (request.get_span_context().trace_id, request.get_span_context().span_id)
    for span in [*queued, *computed]:
        assert span.parent is not None
        assert (span.context.trace_id, span.parent.span_id) == request_ids
    assert batch.parent is None, "a batch starts a trace of its own"
    assert {(link.context.trace_id, link.context.span_id) for link in batch.links} == {
        _ids(span) for span in queued
    }
    for span in [*queued, *computed]:
        assert [_ids_of(link.context) for link in span.links] == [_ids(batch)]
    assert batch.attributes is not None
    assert batch.attributes["simscore.batch_size"] == 2
    assert batch.attributes["simscore.device"] == "cpu"
    assert batch.attributes["simscore.precision"] == "fp32"
    scores = batch.attributes["simscore.scores"]
    assert isinstance(scores, tuple) and scores == ("vgg", "style", "ssim", "mse", "psnr")
    assert batch.attributes["simscore.split"] is False
    for span in queued:  # queue ends when the batch starts: before the batch ends
        assert span.end_time is not None and batch.end_time is not None
        assert span.end_time <= batch.end_time
        assert span.status.status_code is StatusCode.UNSET


def _ids_of(context: object) -> tuple[int, int]:
    return context.trace_id, context.span_id  # type: ignore[attr-defined]


async def test_a_refused_pair_ends_its_queue_span_with_the_reason(
    queue: ScoringQueue, traced: tuple[Tracing, InMemorySpanExporter]
) -> None:
    _, exporter = traced
    with pytest.raises(Overloaded):
        queue.submit_many([_pair(0), _pair(1), _pair(2)], deadline=time.monotonic() + 60)
    spans = _named(exporter, "queue")
    assert len(spans) == 3
    assert {span.status.status_code for span in spans} == {StatusCode.ERROR}
    assert {span.attributes["error.type"] for span in spans if span.attributes} == {
        "app.errors.Overloaded"
    }
    assert _named(exporter, "batch") == []


async def test_a_pair_cancelled_while_queued_ends_its_span_and_is_not_linked(
    queue: ScoringQueue, traced: tuple[Tracing, InMemorySpanExporter]
) -> None:
    _, exporter = traced
    gone, kept = queue.submit_many([_pair(0), _pair(1)], deadline=time.monotonic() + 60)
    gone.cancel()  # type: ignore[attr-defined]
    await kept
    await asyncio.sleep(0)  # the cancelled answer's callback runs on the loop
    (batch,) = _named(exporter, "batch")
    cancelled = [s for s in _named(exporter, "queue") if s.status.status_code is StatusCode.ERROR]
    assert len(cancelled) == 1
    assert cancelled[0].attributes is not None
    assert cancelled[0].attributes["error.type"] == "asyncio.exceptions.CancelledError"
    assert batch.attributes is not None and batch.attributes["simscore.batch_size"] == 1
    assert _ids(cancelled[0]) not in {_ids_of(link.context) for link in batch.links}


def test_a_split_half_is_a_child_of_the_batch_that_ran_out_of_memory() -> None:
    tracing, exporter = in_memory()
    spans = BatchSpans(tracing, device="cuda:0", precision="bf16")
    pairs = [_pair(0), _pair(1)]
    with tracing.span("request"):
        queued = spans.queued(pairs)
    failed = spans.batch_started(pairs, queued, split_of=None)
    spans.batch_ended(failed, MemoryError("CUDA out of memory"))
    half = spans.batch_started(pairs[:1], queued[:1], split_of=failed)
    spans.batch_ended(half, None)
    first, second = _named(exporter, "batch")
    assert first.status.status_code is StatusCode.ERROR
    assert first.attributes is not None and first.attributes["error.type"] == "MemoryError"
    assert second.parent is not None and second.parent.span_id == first.context.span_id
    assert second.attributes is not None and second.attributes["simscore.split"] is True
    assert [_ids_of(link.context) for link in second.links] == [_ids_of(queued[0].link)]
    assert len(_named(exporter, "queue")) == 2, "each queue span ended once, at the first run"
