"""The benchmarks' HTTP load driver: closed-loop asyncio clients posting pairs to ``/compare``.

Used by ``bench/engine.py`` (the service rows of its table), ``bench/gpu.py`` and
``bench/batching.py``; the locust tooling in ``load/`` stays for load tests. Each client posts the
next body of a shared rotation as soon as its last answer arrived, so with at least as many
bodies as clients no two requests in flight share a reference (every pair runs both images
through the model when the reference cache is off).

Throughput is counted over whole batches: from the moment the first batch's answers arrived to
the last answer, so the ramp-up (the first batch forming) does not count against the service.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import statistics
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from bench.common import ROOT
from bench.server_probe import Probe
from devtools.env import python_path
from devtools.http import Files, metric_value, pair_files
from devtools.images import encode, photo_pair
from devtools.servers import ServerProcess, serve_process


@dataclass(frozen=True)
class Body:
    """One ``POST /compare``: its files and form fields."""

    files: Files
    data: dict[str, str]


BATCH_GAP_S = 0.05  # answers closer than this to the first one came from the same batch


@dataclass
class LoadResult:
    """What a run of clients saw, plus the server's own counters over the run."""

    clients: int
    seconds: float
    done_at: list[float] = field(default_factory=list)  # completion times, from the start
    latencies_s: list[float] = field(default_factory=list)
    statuses: dict[int, int] = field(default_factory=dict)
    batch_sizes: list[int] = field(default_factory=list)  # each answer's timing_ms.batch_size
    pairs_scored: float = 0.0  # by the model, from /metrics
    batches: float = 0.0
    busy_s: float = 0.0
    page_faults: int = 0  # the server's minor page faults over the run (when its pid is known)

    @property
    def pairs_per_s(self) -> float:
        """Answers per second over whole batches (see the module docstring)."""
        done = sorted(self.done_at)
        if len(done) < 2:
            return len(done) / self.seconds if self.seconds else 0.0
        first_batch = sum(1 for t in done if t - done[0] < BATCH_GAP_S)
        span = done[-1] - done[0]
        if span <= 0 or len(done) == first_batch:
            return len(done) / self.seconds
        return (len(done) - first_batch) / span

    @property
    def mean_batch(self) -> float:
        """Pairs per model batch: from /metrics when read, else as the answers report it."""
        if self.batches:
            return self.pairs_scored / self.batches
        return statistics.mean(self.batch_sizes) if self.batch_sizes else 0.0

    def percentile_ms(self, q: float) -> float:
        if not self.latencies_s:
            return float("nan")
        ordered = sorted(self.latencies_s)
        return 1000 * ordered[min(len(ordered) - 1, int(q * len(ordered)))]

    def summary(self) -> dict[str, object]:
        return {
            "clients": self.clients,
            "requests": len(self.latencies_s),
            "seconds": round(self.seconds, 2),
            "pairs_per_s": round(self.pairs_per_s, 3),
            "p50_ms": round(self.percentile_ms(0.5), 1),
            "p95_ms": round(self.percentile_ms(0.95), 1),
            "statuses": self.statuses,
            "mean_batch": round(self.mean_batch, 2),
            "model_busy": round(self.busy_s / self.seconds, 3) if self.seconds else 0.0,
            "page_faults_per_pair": round(self.page_faults_per_pair),
        }

    @property
    def page_faults_per_pair(self) -> float:
        """The server's minor page faults per answered pair (large ones mean activations are
        being mapped in afresh every batch; see app/allocator.py)."""
        return self.page_faults / len(self.done_at) if self.done_at else 0.0


def square_bodies(side: int, count: int, metrics: str | None = None) -> list[Body]:
    """``count`` distinct pairs of ``side`` px as PNG uploads (a photo crop and a noisy copy)."""
    bodies = []
    for seed in range(count):
        reference, candidate = photo_pair(side, seed=seed)
        bodies.append(_files(_png(reference), _png(candidate), metrics))
    return bodies


def shaped_bodies(shapes: Sequence[tuple[int, int]], count: int) -> list[Body]:
    """``count`` pairs cycling through ``shapes`` ((width, height), aspect ratios kept as real
    traffic keeps them): a photo fitted to the shape and a JPEG-like noisy copy."""
    bodies = []
    for seed, (width, height) in zip(range(count), itertools.cycle(shapes), strict=False):
        reference, candidate = photo_pair(max(width, height), seed=seed)
        crop = (slice(None), slice(0, height), slice(0, width))
        bodies.append(_files(_png(reference[crop]), _png(candidate[crop]), None))
    return bodies


def _png(image: object) -> bytes:
    import torch

    if not isinstance(image, torch.Tensor):
        raise TypeError("a (3, H, W) tensor")
    array = image.mul(255).round().byte().permute(1, 2, 0).contiguous().numpy()
    return encode(array)


def _files(reference: bytes, candidate: bytes, metrics: str | None) -> Body:
    return Body(pair_files(reference, candidate), {"metrics": metrics} if metrics else {})


async def drive(
    client: httpx.AsyncClient, bodies: Sequence[Body], *, clients: int, seconds: float
) -> LoadResult:
    """``clients`` closed-loop clients posting ``bodies`` in rotation for ``seconds``, then
    waiting for their last answers."""
    result = LoadResult(clients=clients, seconds=0.0)
    turns = itertools.count()
    started = time.monotonic()
    stop_at = started + seconds

    async def client_loop() -> None:
        while time.monotonic() < stop_at:
            body = bodies[next(turns) % len(bodies)]
            sent = time.monotonic()
            response = await client.post("/compare", files=body.files, data=body.data)
            now = time.monotonic()
            result.latencies_s.append(now - sent)
            result.statuses[response.status_code] = result.statuses.get(response.status_code, 0) + 1
            if response.status_code == 200:
                result.done_at.append(now - started)
                result.batch_sizes.append(int(response.json()["timing_ms"]["batch_size"]))

    await asyncio.gather(*(client_loop() for _ in range(clients)))
    result.seconds = time.monotonic() - started
    return result


def run_load(
    base_url: str,
    bodies: Sequence[Body],
    *,
    clients: int,
    seconds: float,
    pid: int | None = None,
) -> LoadResult:
    """``drive`` against a running server, with its ``/metrics`` counters over the run (and its
    page faults, given the server's ``pid``)."""
    before = _counters(base_url)
    probe = Probe(pid) if pid else None
    faults_before = probe.minor_faults() if probe else 0

    async def go() -> LoadResult:
        limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
        async with httpx.AsyncClient(base_url=base_url, timeout=600, limits=limits) as client:
            return await drive(client, bodies, clients=clients, seconds=seconds)

    result = asyncio.run(go())
    after = _counters(base_url)
    if probe:
        result.page_faults = probe.minor_faults() - faults_before
    result.pairs_scored = after[0] - before[0]
    result.batches = after[1] - before[1]
    result.busy_s = after[2] - before[2]
    return result


def _counters(base_url: str) -> tuple[float, float, float]:
    text = httpx.get(f"{base_url}/metrics", timeout=30).text
    return (
        metric_value(text, "simscore_batch_size_sum"),
        metric_value(text, "simscore_batch_size_count"),
        metric_value(text, "simscore_inference_seconds_sum"),
    )


def service_env(**settings: object) -> dict[str, str]:
    """``SIMSCORE_*`` for a benchmark server: random weights, reference cache off, quiet log,
    then ``settings`` (names without the prefix); ``PYTHONPATH`` with the repository in front of
    this process's (where the device machine's wheels are), never in its place."""
    env = {
        "SIMSCORE_WEIGHTS": "random",
        "SIMSCORE_REFERENCE_CACHE_SIZE": "0",
        "SIMSCORE_LOG_LEVEL": "warning",
        "SIMSCORE_QUEUE_SIZE": "1024",
        "SIMSCORE_REQUEST_TIMEOUT_S": "600",
        "SIMSCORE_DRAIN_TIMEOUT_S": "600",
        "PYTHONPATH": python_path(ROOT, ROOT / "clients" / "python" / "src"),
    }
    env.update({f"SIMSCORE_{k.upper()}": str(v) for k, v in settings.items()})
    return env


@contextlib.contextmanager
def serving(
    env: Mapping[str, str], log_path: Path, *, ready_timeout_s: float = 900
) -> Iterator[tuple[ServerProcess, float]]:
    """``simscore serve`` with ``env``; yields it and the seconds from launch to ready."""
    started = time.monotonic()
    with serve_process(env, log_path, ready_timeout_s=ready_timeout_s) as server:
        yield server, time.monotonic() - started


def refusal(log_text: str) -> str:
    """The start-up error line of a server that refused to start (or its last line)."""
    lines = [line for line in log_text.splitlines() if line.strip()]
    for line in lines:
        if "start-up failed" in line or "StartupError" in line:
            message = line.split("start-up failed:", 1)[-1].strip()
            return message.split(". ", 1)[0][:200]
    return lines[-1][:200] if lines else "no log"


def median_rate(results: Sequence[LoadResult]) -> float:
    return statistics.median(r.pairs_per_s for r in results)
