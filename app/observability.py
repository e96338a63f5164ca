"""Prometheus metrics on a registry of the app's own.

Each app builds its own ``Metrics`` (tests build several apps in one process), so nothing is
registered at import time.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

# Every metric name the service exports (counters without the ``_total`` suffix prometheus adds).
EXPORTED_METRICS: tuple[str, ...] = (
    "simscore_requests",
    "simscore_request_duration_seconds",
    "simscore_queue_depth",
    "simscore_queue_wait_seconds",
    "simscore_batch_size",
    "simscore_inference_seconds",
    "simscore_request_failures",
    "simscore_reference_cache_hits",
    "simscore_reference_cache_misses",
    "simscore_reference_cache_bytes",
    "simscore_ready",
    "simscore_gpu_memory_allocated_bytes",
)

FAILURE_REASONS = ("rejected", "timeout", "cancelled", "oom", "invalid_input", "internal")
BATCH_SIZE_BUCKETS = (1, 2, 4, 8, 16, 32, 64)
SECONDS_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)


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
        self.queue_depth = Gauge("simscore_queue_depth", "Pairs waiting for the model.", registry=r)
        self.queue_wait = Histogram(
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
        self.cache_bytes = Gauge(
            "simscore_reference_cache_bytes", "Bytes held by the reference cache.", registry=r
        )
        self.ready = Gauge("simscore_ready", "1 when the model is warm and admitting.", registry=r)
        self.gpu_memory = Gauge(
            "simscore_gpu_memory_allocated_bytes",
            "CUDA memory allocated by torch (0 on CPU).",
            registry=r,
        )
