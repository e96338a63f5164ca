"""The spans of the pipeline's stages (``app.tracing``; README: Tracing).

* ``decode``: one per image (reference, mask, each candidate), from handing its bytes to a
  decode thread until it is at the compared size: the format (from its signature), its bytes,
  its size as uploaded and as compared.
* ``queue``: one per pair, a child of its request's span, from submission until the forward
  pass of its batch starts; then ``compute``, until the pair's answer is back on the event loop
  (the request's share of its batch, so the request's trace has no gap). They travel with the
  pair through the batcher (the batcher's opaque per-item context); ``queue`` ends on the batch
  worker's thread, and both are linked to the batch.
* ``batch``: one per forward pass, on the batch worker's thread, around launching and
  collecting the batch: ``simscore.batch_size`` and what it computed, and a link to the
  ``queue`` span of each pair it scored (OpenTelemetry's way for one operation that serves
  many: its messaging conventions). A batch split after running out of memory has its halves
  as child spans, each linked to its own pairs. A batch span starts a trace of its own.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Sequence

import torch
from opentelemetry import context as context_api
from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.util.types import AttributeValue

from app.batching import BatchTracer, Outcome
from app.imaging import PreparedImage
from app.scoring import PairRequest, PairScores
from app.tracing import Tracing, mark_error
from app.vocabulary import SCORE_NAMES

# Image signatures (the formats app.imaging takes), for the decode span's format attribute.
_SIGNATURES: tuple[tuple[bytes, str], ...] = (
    (b"\x89PNG\r\n\x1a\n", "PNG"),
    (b"\xff\xd8", "JPEG"),
    (b"GIF8", "GIF"),
    (b"BM", "BMP"),
    (b"II*\x00", "TIFF"),
    (b"MM\x00*", "TIFF"),
)


def image_format(data: bytes) -> str:
    """The format an upload's signature names (``unknown`` for anything else)."""
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "WEBP"
    for signature, name in _SIGNATURES:
        if data.startswith(signature):
            return name
    return "unknown"


def upload_attributes(role: str, data: bytes) -> dict[str, AttributeValue]:
    """A ``decode`` span's attributes known before decoding."""
    return {
        "simscore.image.role": role,
        "simscore.image.format": image_format(data),
        "simscore.image.bytes": len(data),
    }


def decoded_attributes(image: PreparedImage | torch.Tensor) -> dict[str, AttributeValue]:
    """A ``decode`` span's attributes once decoded: the size as uploaded and as compared (a
    mask: as compared)."""
    if isinstance(image, torch.Tensor):
        return {
            "simscore.image.compared_width": int(image.shape[-1]),
            "simscore.image.compared_height": int(image.shape[-2]),
        }
    width, height = image.original_size
    return {
        "simscore.image.width": width,
        "simscore.image.height": height,
        "simscore.image.compared_width": image.width,
        "simscore.image.compared_height": image.height,
        "simscore.image.resized": image.resized,
    }


def pair_attributes(pair: PairRequest) -> dict[str, int]:
    _, height, width = pair.shape
    return {"simscore.image.compared_width": width, "simscore.image.compared_height": height}


class PairSpans:
    """One pair's spans in its request's trace: ``queue``, then ``compute`` from its batch's start
    until its answer is back. Each ends once, whichever thread sees its end first (the batch
    worker, or the event loop when the pair is answered, cancelled, expired or refused)."""

    __slots__ = ("_lock", "_parent", "_tracer", "compute", "link", "queue")

    def __init__(self, tracer: trace.Tracer, pair: PairRequest) -> None:
        self._tracer = tracer
        self._parent = context_api.get_current()  # the request's span
        self._lock = threading.Lock()
        self.queue: trace.Span | None = tracer.start_span(
            "queue", context=self._parent, attributes=pair_attributes(pair)
        )
        self.compute: trace.Span | None = None
        self.link = self.queue.get_span_context()  # what its batches link to

    def batch_started(self, batch: trace.Span, size: int) -> None:
        """Its forward pass starts (batch worker's thread): ``queue`` ends, ``compute`` starts,
        both linked to the batch."""
        with self._lock:
            queue, self.queue = self.queue, None
            if queue is None:
                return  # answered already, or a half retried after running out of memory
            queue.add_link(batch.get_span_context())
            queue.set_attribute("simscore.batch_size", size)
            queue.end()
            self.compute = self._tracer.start_span(
                "compute",
                context=self._parent,
                links=[trace.Link(batch.get_span_context())],
                attributes={"simscore.batch_size": size},
            )

    def left(self, error: BaseException | None) -> None:
        """Its pair is answered, or left the queue without being computed."""
        with self._lock:
            span = self.compute or self.queue
            self.queue = self.compute = None
            if span is None:
                return
            if error is not None:
                mark_error(span, error)
            span.end()

    def settle(self, answer: asyncio.Future[Outcome[PairScores]]) -> None:
        """Done callback of the pair's answer (event loop)."""
        if answer.cancelled():
            self.left(asyncio.CancelledError("the request went away before its pair's answer"))
        else:
            self.left(answer.exception())


class BatchSpans(BatchTracer[PairRequest]):
    """The ``queue`` and ``batch`` spans (module docstring) of one scoring queue."""

    def __init__(self, tracing: Tracing, *, device: str, precision: str) -> None:
        self.tracer = tracing.tracer
        self.device = device
        self.precision = precision

    def queued(self, pairs: Sequence[PairRequest]) -> list[PairSpans]:
        """Each pair's spans, in the current span's trace (event loop)."""
        return [PairSpans(self.tracer, pair) for pair in pairs]

    def batch_started(
        self, items: Sequence[PairRequest], contexts: Sequence[object], *, split_of: object
    ) -> object:
        queued = [c for c in contexts if isinstance(c, PairSpans)]
        parent = (
            trace.set_span_in_context(split_of) if isinstance(split_of, trace.Span) else Context()
        )
        wanted = set().union(*(pair.scores for pair in items))
        attributes: dict[str, AttributeValue] = {
            "simscore.batch_size": len(items),
            "simscore.device": self.device,
            "simscore.precision": self.precision,
            "simscore.scores": [name for name in SCORE_NAMES if name in wanted],
            "simscore.split": split_of is not None,
            **pair_attributes(items[0]),
        }
        batch = self.tracer.start_span(
            "batch",
            context=parent,
            links=[trace.Link(q.link) for q in queued],
            attributes=attributes,
        )
        for span in queued:
            span.batch_started(batch, len(items))
        return batch

    def batch_ended(self, batch: object, error: BaseException | None) -> None:
        if not isinstance(batch, trace.Span):
            return
        if error is not None:
            mark_error(batch, error)
        batch.end()
