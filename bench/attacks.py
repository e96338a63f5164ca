"""Every hostile-client attack against a real ``simscore serve``, measured; not a test.

    python bench/attacks.py                 # a few minutes; a Markdown table on stdout
    python bench/attacks.py --skip-slow     # without the slow-client rows (about 1 minute less)

The server runs as production would, less the model (``bench/server_probe.py``):
``SIMSCORE_WEIGHTS=random``, CPU, warmed up at 224 px, one API key set, every other setting at its
default. Each row is one attack from ``devtools/attacks.py`` (the inputs the tests use): what
was sent (bytes), the answer (status and the start of its ``detail``, or how the connection
ended), the time to that answer, the server's CPU seconds, and its peak resident memory during the
attack over the memory it held when the attack started (``VmHWM`` reset through
``/proc/PID/clear_refs`` before each row, and ``VmRSS`` sampled every 5 ms as a check). A
well-behaved client is measured first and last; the last rows are starts refused for invalid
settings.

Memory freed by one row stays mapped for the next (glibc keeps it for reuse, on purpose: see
``SIMSCORE_CPU_ALLOCATOR_TUNING``), so rows are ordered from light to heavy, and an increase is a
lower bound once a heavier row ran before it.

The worst legitimate uploads are timed by ``bench/decode_bound.py``; how far scores move between
CPU kernels, by ``bench/kernels.py``.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import httpx
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.admitted import photo_at_cap
from bench.common import machine, table
from bench.server_probe import (
    DEFAULTS,
    Probe,
    answer_of,
    control_pair,
    excerpt,
    post,
    serving,
    timed,
)
from devtools import attacks
from devtools.attacks import Part
from devtools.framing import FRAMING_CASES, send_with_smuggled
from devtools.images import encode, photo
from devtools.servers import CLI, ROOT, ServerProcess
from devtools.sockets import connect

Outcome = tuple[str, float]  # (answer, seconds to it)


# -- requests -----------------------------------------------------------------------------------


def closed_answer(ended: attacks.Closed, sent: int | None = None) -> str:
    text = ended.describe()
    if ended.status is not None:
        try:
            found = str(json.loads(ended.detail)["detail"])
        except (ValueError, KeyError):
            found = ended.detail
        text = f"{ended.status} {excerpt(found, 50)}; closed"
    if sent is not None:
        text += f"; client had sent {sent / 1e6:.1f} MB"
    return text


def stream(url: str, head: bytes, chunks: Iterator[bytes]) -> tuple[attacks.Closed, int]:
    with connect(url) as sock:
        sock.sendall(head)
        return attacks.stream_until_answer(sock, chunks)


# -- the attack table ---------------------------------------------------------------------------


HEADERS = ("attack", "sent", "answer", "time to answer", "server CPU s", "peak RSS MiB")


@dataclass
class Row:
    attack: str
    sent: str
    answer: str
    seconds: float | None
    cpu_s: float
    peak_mib: float
    shared: bool = False  # CPU and memory measured for a group of rows run at once

    def cells(self) -> list[str]:
        took = "-" if self.seconds is None else f"{self.seconds:.2f} s"
        group = " (group)" if self.shared else ""
        return [
            self.attack,
            self.sent,
            self.answer,
            took,
            f"{self.cpu_s:.2f}{group}",
            f"{self.peak_mib:+.0f}{group}",
        ]


class AttackBench:
    def __init__(self, server: ServerProcess) -> None:
        self.url = server.url
        self.server = server
        self.probe = Probe(server.process.pid)
        self.rows: list[Row] = []
        self.reference, self.candidate = control_pair()

    def run(self, attack: str, sent: str, fn: Callable[[], Outcome]) -> None:
        with self.probe.watch() as probe:
            answer, seconds = fn()
        row = Row(attack, sent, answer, seconds, probe.cpu_s, probe.peak_mib)
        self.rows.append(row)
        print(" | ".join(row.cells()), file=sys.stderr, flush=True)

    # control

    def well_behaved(self, label: str) -> None:
        parts = attacks.pair_parts(self.reference, self.candidate)

        def go() -> Outcome:
            response, took = timed(lambda: post(self.url, "/compare", parts))
            return answer_of(response), took

        self.run(label, f"224 px PNG + JPEG pair ({attacks.form_length(parts):,} B)", go)

    # access and public surface

    def keys(self) -> None:
        for name, headers in attacks.AUTH_ATTEMPTS.items():
            head = attacks.request_head("/compare", headers=headers, content_length=20_000_000)

            def go(head: bytes = head) -> Outcome:
                with connect(self.url) as sock:
                    sock.sendall(head)  # the 20 MB body is never sent: the answer comes first
                    ended = attacks.wait_closed(sock, 10)
                return closed_answer(ended), ended.first_byte_s or ended.elapsed_s

            self.run(f"{name}", "headers declaring a 20,000,000 B body", go)

        def surface() -> Outcome:
            started = time.perf_counter()
            codes = [httpx.get(self.url + p, timeout=10).status_code for p in SURFACE]
            took = (time.perf_counter() - started) / len(SURFACE)
            return ", ".join(f"{p} {c}" for p, c in zip(SURFACE, codes, strict=True)), took

        self.run("public surface with keys set", "GET, no key", surface)

    # request limits

    def limits(self) -> None:
        def declared() -> Outcome:
            head = attacks.request_head("/compare", headers=attacks.bearer(), content_length=10**9)
            with connect(self.url) as sock:
                sock.sendall(head)
                ended = attacks.wait_closed(sock, 10)
            return closed_answer(ended), ended.first_byte_s or ended.elapsed_s

        self.run("body over MAX_REQUEST_BYTES, declared", "Content-Length 1,000,000,000", declared)

        def endless_unknown() -> Outcome:
            head = attacks.request_head("/compare", headers=attacks.bearer(), chunked=True)
            body = (attacks.chunked(c) for c in attacks.endless_file("unknown"))
            ended, sent = stream(self.url, head, body)
            return closed_answer(ended, sent), ended.first_byte_s or ended.elapsed_s

        self.run("chunked body that never ends (unknown field)", "endless", endless_unknown)

        def over_cap(chunked: bool) -> Outcome:
            parts = attacks.oversized_file(self.reference, DEFAULTS.max_upload_bytes)
            length = None if chunked else attacks.form_length(parts)
            head = attacks.request_head(
                "/compare", headers=attacks.bearer(), content_length=length, chunked=chunked
            )
            chunks = attacks.form_chunks(parts, 256 * 1024)
            body = (attacks.chunked(c) for c in chunks) if chunked else chunks
            ended, sent = stream(self.url, head, body)
            return closed_answer(ended, sent), ended.first_byte_s or ended.elapsed_s

        size = f"{4 * DEFAULTS.max_upload_bytes:,} B file"
        self.run("file over MAX_UPLOAD_BYTES", size + ", Content-Length", lambda: over_cap(False))
        self.run("file over MAX_UPLOAD_BYTES, chunked", size + ", chunked", lambda: over_cap(True))
        forms = {
            "text field of 1 MiB": ("/compare", attacks.huge_text_field(self.reference, b"x")),
            "1,000 parts": ("/compare", attacks.too_many_parts(self.reference, b"x")),
            "65 candidates": (
                "/compare/batch",
                attacks.too_many_candidates(self.reference, self.candidate, 65),
            ),
        }
        for name, (path, parts) in forms.items():

            def go(path: str = path, parts: list[Part] = parts) -> Outcome:
                response, took = timed(lambda: post(self.url, path, parts))
                return answer_of(response), took

            self.run(name, f"{attacks.form_length(parts):,} B", go)

    # slow clients and connections

    def slow_clients(self) -> None:
        header_s, body_s = DEFAULTS.header_timeout_s, DEFAULTS.body_timeout_s

        def slow(kind: str) -> Outcome:
            sock = attacks.slow_client(self.url, kind, attacks.bearer())
            with sock:
                ended = attacks.wait_closed(sock, max(header_s, body_s) + 10)
            return closed_answer(ended), ended.elapsed_s

        def drip() -> Outcome:
            ended = attacks.drip_header(self.url, interval_s=1.0, timeout_s=header_s + 10)
            return closed_answer(ended), ended.elapsed_s

        def crowd() -> Outcome:
            kinds = [kind for kind in attacks.SLOW_CLIENTS for _ in range(10)]
            started = time.monotonic()
            socks = [attacks.slow_client(self.url, kind, attacks.bearer()) for kind in kinds]
            with ThreadPoolExecutor(len(socks)) as pool:
                ended = list(pool.map(lambda s: attacks.wait_closed(s, 40, started), socks))
            for sock in socks:
                sock.close()
            open_ = sum(not e.closed for e in ended)
            return f"{30 - open_} of 30 closed, {open_} open", max(e.elapsed_s for e in ended)

        def keepalive() -> Outcome:
            with connect(self.url) as sock:
                sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: simscore\r\n\r\n")
                answered = time.monotonic()
                sock.recv(65536)
                ended = attacks.wait_closed(sock, 30, answered)
            return "200, then " + ended.describe(), ended.elapsed_s

        cases: list[tuple[str, str, Callable[[], Outcome]]] = [
            ("slow client: nothing", "connect, send nothing", lambda: slow("nothing")),
            ("slow client: half a header", "39 B of a request head", lambda: slow("half-header")),
            ("slow client: header drip", "1 header byte per second", drip),
            ("slow client: half a body", "head + 40,000 of 100,000 B", lambda: slow("half-body")),
            ("30 slow clients at once", "10 of each kind above", crowd),
            ("idle keep-alive connection", "one GET, then nothing", keepalive),
        ]
        # At once (they only wait): one window, so CPU and memory are the group's.
        results: dict[str, Outcome] = {}
        with self.probe.watch() as probe, ThreadPoolExecutor(len(cases)) as pool:
            futures = {name: pool.submit(fn) for name, _, fn in cases}
            results = {name: future.result() for name, future in futures.items()}
        for name, sent, _ in cases:
            answer, seconds = results[name]
            self.rows.append(Row(name, sent, answer, seconds, probe.cpu_s, probe.peak_mib, True))

        def slots() -> Outcome:
            slots_n = DEFAULTS.max_concurrent_requests
            held = [
                attacks.slow_client(self.url, "half-body", attacks.bearer()) for _ in range(slots_n)
            ]
            time.sleep(0.5)
            parts = attacks.pair_parts(self.reference, self.candidate)
            response, took = timed(lambda: post(self.url, "/compare", parts))
            with ThreadPoolExecutor(slots_n) as pool:
                ended = list(pool.map(lambda s: attacks.wait_closed(s, body_s + 10), held))
            for sock in held:
                sock.close()
            cut = sum(e.status == 408 for e in ended)
            late = max(e.elapsed_s for e in ended)
            return f"{answer_of(response)}; the {slots_n} held: {cut} x 408 by {late:.1f} s", took

        self.run("uploads held open on every request slot", "64 half bodies, then 1 request", slots)

        def connections() -> Outcome:
            limit = DEFAULTS.max_connections
            idle = [connect(self.url) for _ in range(limit)]
            time.sleep(0.5)
            response, took = timed(lambda: httpx.get(self.url + "/healthz", timeout=10))
            ended = [attacks.wait_closed(s, header_s + 10) for s in idle]
            for sock in idle:
                sock.close()
            closed = sum(e.closed for e in ended)
            return f"{answer_of(response)}; the {limit} idle: {closed} closed", took

        self.run(
            "connections over MAX_CONNECTIONS", "512 idle connections, then 1 GET", connections
        )

    # decoding

    def hostile_files(self) -> None:
        for name, hostile in attacks.HOSTILE_FILES.items():
            data = hostile.build()
            parts = attacks.pair_parts(data, self.candidate)

            def go(parts: list[Part] = parts) -> Outcome:
                response, took = timed(lambda: post(self.url, "/compare", parts))
                return answer_of(response), took

            self.run(name, f"{len(data):,} B", go)
        for kind, build in attacks.HUGE_CANVASES.items():
            canvas = build()
            parts = attacks.pair_parts(canvas, canvas, metrics="mse")

            def tiny_canvas(parts: list[Part] = parts) -> Outcome:
                response, took = timed(lambda: post(self.url, "/compare", parts))
                image = response.json().get("image", {})
                return f"{response.status_code}, scored at {image.get('width')} px", took

            label = f"blank 6000x6000 {kind} (reference and candidate)"
            self.run(label, f"{len(canvas):,} B each", tiny_canvas)

    def budgets(self, big: bytes) -> None:
        """``big``: a PNG at SIMSCORE_MAX_PIXELS (40 Mpx), within every limit."""
        parts = attacks.batch_parts(big, [big] * 5, metrics="mse")

        def batch() -> Outcome:
            response, took = timed(lambda: post(self.url, "/compare/batch", parts))
            results = response.json().get("results", [])
            statuses = [r.get("error", {}).get("status", 200) for r in results]
            return f"{response.status_code}: items {statuses}", took

        sent = f"reference + 5 candidates of 40 Mpx ({attacks.form_length(parts):,} B)"
        self.run("pixel budget of one batch request", sent, batch)

        pair = attacks.pair_parts(big, big, metrics="mse")

        def abandoned() -> Outcome:
            before = self.server.log().count('"status": 499')
            with ThreadPoolExecutor(4) as pool:
                list(
                    pool.map(
                        lambda _: attacks.abandon(
                            self.url, "/compare", pair, attacks.bearer(), after_s=0.5
                        ),
                        range(4),
                    )
                )
            busy_s = self.busy_after()
            parts = attacks.pair_parts(self.reference, self.candidate)
            response, took = timed(lambda: post(self.url, "/compare", parts))
            time.sleep(1.0)  # let the abandoned requests' log lines land
            gone = self.server.log().count('"status": 499') - before
            return (
                f"decoding ended {busy_s:.1f} s after the clients left; next good request "
                f"{answer_of(response)}; {gone} x 499 logged",
                took,
            )

        self.run(
            "4 requests abandoned mid-decode",
            f"4 x 2 x 40 Mpx PNG ({attacks.form_length(pair):,} B each)",
            abandoned,
        )

    def busy_after(self, idle_cpu_s: float = 0.02, window_s: float = 0.25) -> float:
        """Seconds until the server's CPU use falls under ``idle_cpu_s`` per ``window_s``."""
        started = time.monotonic()
        last = self.probe.cpu_seconds()
        while time.monotonic() - started < 60:
            time.sleep(window_s)
            now = self.probe.cpu_seconds()
            if now - last < idle_cpu_s:
                return time.monotonic() - started - window_s
            last = now
        return time.monotonic() - started

    def framing(self) -> None:
        def go() -> Outcome:
            started = time.perf_counter()
            answers = [send_with_smuggled(self.url, case) for case in FRAMING_CASES]
            took = (time.perf_counter() - started) / len(answers)
            kinds = Counter(answer.describe() for answer in answers)
            return "; ".join(f"{n} x {kind}" for kind, n in kinds.items()), took

        self.run(
            f"{len(FRAMING_CASES)} request-smuggling shapes",
            "CL + TE, duplicate CL, obs-fold, TE not chunked; each + a second request",
            go,
        )

    def upload_memory(self) -> None:
        per_file = DEFAULTS.max_upload_bytes - 100_000
        parts = attacks.batch_parts(self.reference, [per_file] * 6)
        length = attacks.form_length(parts)
        count = DEFAULTS.upload_memory_bytes // length + 1

        def flood() -> Outcome:
            socks: list[socket.socket] = []
            answers: list[str] = []
            started = time.perf_counter()
            took = 0.0
            try:
                for _ in range(count):
                    sock = connect(self.url)
                    sock.settimeout(60)
                    socks.append(sock)
                    sock.sendall(
                        attacks.request_head(
                            "/compare/batch", headers=attacks.bearer(), content_length=length
                        )
                    )
                    chunks = attacks.form_chunks(parts, 1 << 20)
                    held = _all_but_the_end(chunks, length - 4096)
                    t0 = time.perf_counter()
                    for chunk in held:
                        sock.sendall(chunk)
                    readable = _answered(sock, 1.0)
                    if readable:
                        ended = attacks.wait_closed(sock, 10)
                        answers.append(closed_answer(ended))
                        took = time.perf_counter() - t0
                time.sleep(0.5)
                rss = self.probe.rss_mib()
            finally:
                for sock in socks:
                    sock.close()
            total = time.perf_counter() - started
            refused = answers[0] if answers else "none refused"
            return (
                f"{count - len(answers)} held, the last {refused}; RSS {rss:,.0f} MiB "
                f"({total:.1f} s in all)",
                took,
            )

        self.run(
            "uploads filling UPLOAD_MEMORY_BYTES",
            f"{count} x {length:,} B batch bodies, held before their last 4 kB",
            flood,
        )

    def drain(self) -> int:
        big = Image.fromarray(photo("astronaut")).resize((3000, 3000))
        parts = attacks.pair_parts(encode(big), encode(big.rotate(1)), metrics="mse")
        result: list[httpx.Response] = []

        def go() -> Outcome:
            thread = threading.Thread(
                target=lambda: result.append(post(self.url, "/compare", parts))
            )
            thread.start()
            time.sleep(0.5)
            started = time.perf_counter()
            self.server.process.send_signal(signal.SIGTERM)
            thread.join(120)
            code = self.server.process.wait(120)
            took = time.perf_counter() - started
            return f"in-flight request {answer_of(result[0])}; exit {code} {took:.1f} s after", took

        self.run("SIGTERM while a request decodes", "2 x 3000x3000 PNG, then SIGTERM", go)
        return self.server.process.returncode


SURFACE = ("/docs", "/redoc", "/openapi.json", "/metrics")


def _all_but_the_end(chunks: Iterator[bytes], keep: int) -> Iterator[bytes]:
    sent = 0
    for chunk in chunks:
        if sent + len(chunk) > keep:
            yield chunk[: keep - sent]
            return
        sent += len(chunk)
        yield chunk


def _answered(sock: socket.socket, wait_s: float) -> bool:
    import select

    readable, _, _ = select.select([sock], [], [], wait_s)
    return bool(readable)


# -- start-up refusals --------------------------------------------------------------------------


def misconfigured(env: dict[str, str]) -> Outcome:
    started = time.perf_counter()
    result = subprocess.run(
        [*CLI, "serve", "--port", "0"],
        cwd=ROOT,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    lines = (result.stdout + result.stderr).strip().splitlines()
    return (
        f"exit {result.returncode}, {len(lines)} line: "
        + excerpt(lines[-1].replace("Value error, ", "").removeprefix("simscore: "), 70),
        time.perf_counter() - started,
    )


# -- main -------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--skip-slow", action="store_true", help="leave out the slow clients")
    args = parser.parse_args()
    print("preparing the 40 Mpx PNG ...", file=sys.stderr, flush=True)
    big = encode(photo_at_cap(), "PNG")
    started = datetime.datetime.now(datetime.timezone.utc)
    load_before = os.getloadavg()
    with serving("simscore-attacks-") as server:
        bench = AttackBench(server)
        idle_mib = bench.probe.rss_mib()
        bench.well_behaved("well-behaved client (control, first)")
        bench.keys()
        bench.limits()
        bench.framing()
        if not args.skip_slow:
            bench.slow_clients()
        bench.hostile_files()
        bench.upload_memory()
        bench.budgets(big)
        bench.well_behaved("well-behaved client (control, after the attacks)")
        exit_code = bench.drain()
    for name, value in {"empty": "", "short": "short-key"}.items():
        bench.rows.append(
            Row(
                f"SIMSCORE_API_KEYS {name}",
                f"SIMSCORE_API_KEYS={value!r}",
                *misconfigured({"SIMSCORE_API_KEYS": value}),
                0.0,
                0.0,
            )
        )
    load_after = os.getloadavg()
    print(f"simscore attacks, {started:%Y-%m-%d %H:%M} UTC, {machine()}")
    print(
        f"load average {load_before[0]:.2f} / {load_before[1]:.2f} / {load_before[2]:.2f} "
        f"before, {load_after[0]:.2f} / {load_after[1]:.2f} / {load_after[2]:.2f} after; "
        f"server idle RSS after warm-up {idle_mib:,.0f} MiB; drain exit code {exit_code}\n"
    )
    print(table(HEADERS, [row.cells() for row in bench.rows], text_columns=3))
    print(f"\nserver log: {server.log_path}")


if __name__ == "__main__":
    main()
