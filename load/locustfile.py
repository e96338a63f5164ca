"""Realistic traffic for simscore: ``locust -f load/locustfile.py --host http://...``.

Weighted tasks (see ``TASK_WEIGHTS``): photo pairs at 224 x 224 and 512 x 512, pairs of different
sizes, identical pairs, a dashboard comparing many candidates against one golden image
(``/compare/batch`` when the service has it, else one ``/compare`` per candidate), and the health
endpoints. Every 200 body is checked (``traffic.check_*``) and its scores must agree with the
first answer for the same payload. A 429 with a proper body is expected backpressure and is
reported on its own rows (type ``429``), and that user honours its ``Retry-After`` before its
next task; a 429 with a bad body, or any other status, fails.

Environment (all optional):

* ``SIMSCORE_LOAD_SCALE``: multiply every image side (default 1; tests use less).
* ``SIMSCORE_LOAD_DASHBOARD_CANDIDATES``: candidates per dashboard (default 8).
* ``SIMSCORE_LOAD_WAIT_S``: think time ``min,max`` per user between tasks (default ``0.1,0.5``).
* ``SIMSCORE_LOAD_PAIRS_PER_S``: pace the users so that together they offer this many pairs per
  second (open-loop-like; used by the soak), instead of the think time.
* ``SIMSCORE_LOAD_SUMMARY``: write a JSON summary of the scoring requests here at exit.
* ``SIMSCORE_LOAD_STARTED``: touch this file when the users start.

``run_load.py`` (``make load`` / ``make soak``) starts the service and runs this headless.
"""

from __future__ import annotations

import functools
import json
import os
import random
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from locust import HttpUser, events, task
from locust.env import Environment
from locust.stats import StatsEntry

try:
    from load import traffic
except ImportError:  # run as `locust -f load/locustfile.py` from anywhere
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from load import traffic

TASK_WEIGHTS: dict[str, int] = {
    "compare_224": 6,
    "compare_512": 2,
    "compare_mixed_sizes": 2,
    "compare_identical": 1,
    "dashboard": 1,
    "health": 1,
}
SCALE = float(os.environ.get("SIMSCORE_LOAD_SCALE", "1"))
DASHBOARD_CANDIDATES = int(os.environ.get("SIMSCORE_LOAD_DASHBOARD_CANDIDATES", "8"))
WAIT_S = tuple(float(v) for v in os.environ.get("SIMSCORE_LOAD_WAIT_S", "0.1,0.5").split(","))
PAIRS_PER_S = float(os.environ.get("SIMSCORE_LOAD_PAIRS_PER_S", "0") or 0)
SUMMARY_PATH = os.environ.get("SIMSCORE_LOAD_SUMMARY")
STARTED_PATH = os.environ.get("SIMSCORE_LOAD_STARTED")
PAIRS_PER_TASK = traffic.pairs_per_task(
    TASK_WEIGHTS,
    {
        "compare_224": 1,
        "compare_512": 1,
        "compare_mixed_sizes": 1,
        "compare_identical": 1,
        "dashboard": DASHBOARD_CANDIDATES,
    },
)
BACKPRESSURE_TYPE = "429"

TRAFFIC = traffic.build_traffic(SCALE, DASHBOARD_CANDIDATES)
BOOK = traffic.ScoreBook()
_batch_field: list[str | None] = []  # discovered once per process from /openapi.json


class SimscoreUser(HttpUser):
    """A client of the service: scores pairs, loads dashboards, polls health."""

    def on_start(self) -> None:
        self.turn = random.randrange(1000)
        self.next_start = time.monotonic()
        self.retry_at = 0.0  # after a 429: not before its Retry-After
        if not _batch_field:
            response = self.client.get("/openapi.json", name="/openapi.json (setup)")
            _batch_field.append(traffic.batch_field(response.json()) if response.ok else None)

    def wait_time(self) -> float:
        """Think time, or, with ``SIMSCORE_LOAD_PAIRS_PER_S``, the pacing that offers that
        rate across every running user; never before a 429's Retry-After."""
        now = time.monotonic()
        if PAIRS_PER_S <= 0:
            wait = random.uniform(WAIT_S[0], WAIT_S[-1])
        else:
            users = max(1, self.environment.runner.user_count if self.environment.runner else 1)
            interval = users * PAIRS_PER_TASK / PAIRS_PER_S
            self.next_start = max(self.next_start + interval, now)
            wait = self.next_start - now
        return max(0.0, wait, self.retry_at - now)

    @task(TASK_WEIGHTS["compare_224"])
    def compare_224(self) -> None:
        self._compare(self._pick(TRAFFIC.square_224))

    @task(TASK_WEIGHTS["compare_512"])
    def compare_512(self) -> None:
        self._compare(self._pick(TRAFFIC.square_512))

    @task(TASK_WEIGHTS["compare_mixed_sizes"])
    def compare_mixed_sizes(self) -> None:
        self._compare(self._pick(TRAFFIC.mixed_sizes))

    @task(TASK_WEIGHTS["compare_identical"])
    def compare_identical(self) -> None:
        self._compare(self._pick(TRAFFIC.identical))

    @task(TASK_WEIGHTS["dashboard"])
    def dashboard(self) -> None:
        """Every candidate against the golden image: one batch request, or one per tile."""
        board = TRAFFIC.dashboard
        field = _batch_field[0] if _batch_field else None
        if field is None:
            for j, candidate in enumerate(board.candidates):
                pair = traffic.Pair(
                    board.name, f"{board.key}:{j}", board.reference, candidate, board.expect
                )
                self._compare(pair)
                if self.retry_at > time.monotonic():
                    break  # backpressure: the rest of the board waits for Retry-After
            return
        files = [("reference", board.reference)] + [(field, c) for c in board.candidates]

        def check(body: Any) -> None:
            results = traffic.check_batch(body, board.expect, len(board.candidates))
            for j, scores in enumerate(results):
                BOOK.check(f"{board.key}:{j}", scores)

        with self.client.post(
            "/compare/batch", files=files, name="/compare/batch dashboard", catch_response=True
        ) as response:
            self._judge(response, check)

    @task(TASK_WEIGHTS["health"])
    def health(self) -> None:
        for path, word in (("/healthz", "ok"), ("/readyz", "ready")):
            with self.client.get(path, catch_response=True) as response:
                self._judge(response, functools.partial(traffic.check_health, status=word))

    def _pick(self, pairs: tuple[traffic.Pair, ...]) -> traffic.Pair:
        self.turn += 1
        return traffic.select(pairs, self.turn)

    def _compare(self, pair: traffic.Pair) -> None:
        files = {"reference": pair.reference, "candidate": pair.candidate}

        def check(body: Any) -> None:
            BOOK.check(pair.key, traffic.check_compare(body, pair.expect))

        with self.client.post(
            "/compare", files=files, name=pair.name, catch_response=True
        ) as response:
            self._judge(response, check)

    def _judge(self, response: Any, check: Callable[[Any], None]) -> None:
        """Pass a 200 only if its body checks out; report a good 429 on its own row."""
        status = response.status_code
        try:
            body = response.json()
        except ValueError:
            body = None
        try:
            if status == 200:
                check(body)
                response.success()
            elif status == 429:
                traffic.check_backpressure(response.headers, body)
                response.request_meta["request_type"] = BACKPRESSURE_TYPE
                response.success()
                self.retry_at = time.monotonic() + float(response.headers["Retry-After"])
            else:
                detail = body.get("detail") if isinstance(body, dict) else response.text[:200]
                response.failure(f"HTTP {status}: {detail}")
        except traffic.BadResponse as exc:
            response.failure(f"HTTP {status}, bad body: {exc}")


@events.test_start.add_listener  # type: ignore[untyped-decorator]
def _mark_start(**_: Any) -> None:
    """Tell the driver that users start now (locust's own start-up is not load time)."""
    if STARTED_PATH:
        Path(STARTED_PATH).write_text(str(time.time()))


@events.quitting.add_listener  # type: ignore[untyped-decorator]
def _write_summary(environment: Environment, **_: Any) -> None:
    """Exact percentiles over the scoring requests only (health checks would pull them down)."""
    if not SUMMARY_PATH:
        return
    stats = environment.stats
    scoring = StatsEntry(stats, "scoring", "")
    backpressure = StatsEntry(stats, "backpressure", "")
    rows = []
    for (name, method), entry in stats.entries.items():
        rows.append(
            {
                "type": method,
                "name": name,
                "requests": entry.num_requests,
                "failures": entry.num_failures,
                "p50_ms": entry.get_response_time_percentile(0.5),
                "p95_ms": entry.get_response_time_percentile(0.95),
                "p99_ms": entry.get_response_time_percentile(0.99),
            }
        )
        if method == BACKPRESSURE_TYPE:
            backpressure.extend(entry)
        elif name.startswith("/compare"):
            scoring.extend(entry)
    total = stats.total
    summary = {
        "requests": total.num_requests,
        "failures": total.num_failures,
        "requests_per_s": total.total_rps,
        "backpressure_429": backpressure.num_requests,
        "scoring_requests": scoring.num_requests,
        "scoring_failures": scoring.num_failures,
        "scoring_p50_ms": scoring.get_response_time_percentile(0.5),
        "scoring_p95_ms": scoring.get_response_time_percentile(0.95),
        "scoring_p99_ms": scoring.get_response_time_percentile(0.99),
        "scoring_max_ms": scoring.max_response_time,
        "failure_messages": {
            str(error.error): error.occurrences for error in stats.errors.values()
        },
        "rows": rows,
    }
    Path(SUMMARY_PATH).write_text(json.dumps(summary, indent=2, default=str))
