"""Prometheus metrics on a registry of the app's own, and the observer the batcher, the
reference cache and the pipeline report to.

Each app builds its own ``Metrics`` (tests build several apps in one process), so nothing is
registered at import time.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from app.errors import DeviceFailed
from app.scoring.device import MemoryStats

# Every metric name the service exports (counters without the ``_total`` suffix prometheus adds).
EXPORTED_METRICS: tuple[str, ...] = (
    "simscore_requests",
    "simscore_request_duration_seconds",
    "simscore_queue_depth",
    "simscore_queue_wait_seconds",
    "simscore_batch_size",
    "simscore_inference_seconds",
    "simscore_score_seconds",
    "simscore_network_seconds",
    "simscore_request_failures",
    "simscore_reference_cache_hits",
    "simscore_reference_cache_misses",
    "simscore_reference_cache_bytes",
    "simscore_ready",
    "simscore_gpu_memory_allocated_bytes",
    "simscore_gpu_memory_reserved_bytes",
    "simscore_gpu_memory_peak_bytes",
    "simscore_batch_failures",
    "simscore_trace_spans_dropped",
)

FAILURE_REASONS = (
    "rejected",
    "timeout",
    "cancelled",
    "oom",
    "invalid_input",
    "internal",
    "device",
)
BATCH_FAILURE_KINDS = ("oom", "error", "device")
SPAN_DROP_REASONS = ("queue_full", "export_failed")  # app.tracing.export
BATCH_SIZE_BUCKETS = (1, 2, 4, 8, 16, 32, 64)
SECONDS_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)


def _spans_dropped(registry: CollectorRegistry) -> Counter:
    counter = Counter(
        "simscore_trace_spans_dropped",
        "Trace spans dropped instead of exported, by reason: queue_full (the collector is "
        "slow or down) or export_failed.",
        ["reason"],
        registry=registry,
    )
    for reason in SPAN_DROP_REASONS:
        counter.labels(reason=reason)
    return counter


class Metrics:
    """The service's Prometheus metrics (names in ``EXPORTED_METRICS``)."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        r = self.registry
        self.requests = Counter(
            "simscore_requests", "HTTP responses by status code.", ["status"], registry=r
        )
        self.request_duration = Histogram(
            "simscore_request_duration_seconds",
            "Time from request start to response, by endpoint.",
            ["endpoint"],
            buckets=SECONDS_BUCKETS,
            registry=r,
        )
        self._batching(r)
        self._scoring(r)
        self._outcomes(r)
        self._device(r)

    def _batching(self, r: CollectorRegistry) -> None:
        self.queue_depth_gauge = Gauge(
            "simscore_queue_depth", "Pairs waiting for the model.", registry=r
        )
        self.queue_wait_seconds = Histogram(
            "simscore_queue_wait_seconds",
            "Time a pair waited in the queue before its batch ran.",
            buckets=SECONDS_BUCKETS,
            registry=r,
        )
        self.batch_size = Histogram(
            "simscore_batch_size", "Pairs per model batch.", buckets=BATCH_SIZE_BUCKETS, registry=r
        )
        self.inference = Histogram(
            "simscore_inference_seconds",
            "Time to score one batch (forward pass and metrics).",
            buckets=SECONDS_BUCKETS,
            registry=r,
        )

    def _scoring(self, r: CollectorRegistry) -> None:
        self.score_time = Histogram(
            "simscore_score_seconds",
            "Time to compute one score for one batch, by score (its metric; the forward passes "
            "are in simscore_network_seconds). On CUDA: host-side, the time to queue the work.",
            ["score"],
            buckets=SECONDS_BUCKETS,
            registry=r,
        )
        self.network_time = Histogram(
            "simscore_network_seconds",
            "Time of one network's forward pass for one batch, by network (vgg19, lpips_alexnet, "
            "lpips_vgg16, dists_vgg16). On CUDA: host-side, the time to queue the work.",
            ["network"],
            buckets=SECONDS_BUCKETS,
            registry=r,
        )

    def _outcomes(self, r: CollectorRegistry) -> None:
        self.failures = Counter(
            "simscore_request_failures",
            "Pairs or requests that failed, by reason.",
            ["reason"],
            registry=r,
        )
        for reason in FAILURE_REASONS:
            self.failures.labels(reason=reason)
        self.cache_hits = Counter(
            "simscore_reference_cache_hits", "Reference features found in the cache.", registry=r
        )
        self.cache_misses = Counter(
            "simscore_reference_cache_misses",
            "Reference features computed because they were not cached.",
            registry=r,
        )
        self.cache_bytes_gauge = Gauge(
            "simscore_reference_cache_bytes", "Bytes held by the reference cache.", registry=r
        )
        self.ready = Gauge("simscore_ready", "1 when the model is warm and admitting.", registry=r)

    def _device(self, r: CollectorRegistry) -> None:
        self.gpu_allocated = Gauge(
            "simscore_gpu_memory_allocated_bytes",
            "CUDA memory held by tensors after the last batch (0 on CPU).",
            registry=r,
        )
        self.gpu_reserved = Gauge(
            "simscore_gpu_memory_reserved_bytes",
            "CUDA memory reserved by torch's caching allocator after the last batch (0 on CPU).",
            registry=r,
        )
        self.gpu_peak = Gauge(
            "simscore_gpu_memory_peak_bytes",
            "Peak CUDA memory allocated during the last batch, failed ones included (0 on CPU).",
            registry=r,
        )
        self.batch_failures = Counter(
            "simscore_batch_failures",
            "Model batches that failed, by kind: oom (retried in halves), device (a sticky GPU "
            "error: the process exits) or error.",
            ["kind"],
            registry=r,
        )
        for kind in BATCH_FAILURE_KINDS:
            self.batch_failures.labels(kind=kind)
        self.spans_dropped = _spans_dropped(r)

    # -- what the batcher, the reference cache and the pipeline report ----------------------

    def queue_depth(self, items: int) -> None:
        self.queue_depth_gauge.set(items)

    def queue_wait(self, seconds: float) -> None:
        self.queue_wait_seconds.observe(seconds)

    def batch_done(self, items: int, seconds: float) -> None:
        self.batch_size.observe(items)
        self.inference.observe(seconds)

    def batch_failed(self, items: int, exc: BaseException, *, exhausted: bool) -> None:
        kind = "oom" if exhausted else "device" if isinstance(exc, DeviceFailed) else "error"
        self.batch_failures.labels(kind=kind).inc()

    def score_seconds(self, score: str, seconds: float) -> None:
        self.score_time.labels(score=score).observe(seconds)

    def network_seconds(self, network: str, seconds: float) -> None:
        self.network_time.labels(network=network).observe(seconds)

    def cache_lookup(self, hit: bool) -> None:
        (self.cache_hits if hit else self.cache_misses).inc()

    def cache_bytes(self, nbytes: int) -> None:
        self.cache_bytes_gauge.set(nbytes)

    def trace_spans_dropped(self, spans: int, reason: str) -> None:
        self.spans_dropped.labels(reason=reason).inc(spans)

    def device_memory(self, stats: MemoryStats) -> None:
        self.gpu_allocated.set(stats.allocated)
        self.gpu_reserved.set(stats.reserved)
        self.gpu_peak.set(stats.peak)
