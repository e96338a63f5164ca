"""Every attack class of issue 9 against a real ``simscore serve``, measured; not a test.

    python bench/attacks.py                 # about 3 minutes; Markdown tables on stdout
    python bench/attacks.py --skip-slow     # without the slow-client rows (about 1 minute less)

The server runs as production would, less the model: ``SIMSCORE_WEIGHTS=random``, CPU, warmed
up at 224 px, one API key set, every other setting at its default. Each row is one attack from
``tests/support/attacks.py`` (the inputs the tests use): what was sent (bytes), the answer
(status and the start of its ``detail``, or how the connection ended), the time to that answer,
the server's CPU seconds, and its peak resident memory during the attack over the memory it held
when the attack started (``VmHWM`` reset through ``/proc/PID/clear_refs`` before each row, and
``VmRSS`` sampled every 5 ms as a check). A well-behaved client is measured first and last.

Memory freed by one row stays mapped for the next (glibc keeps it for reuse, on purpose: see
``SIMSCORE_CPU_ALLOCATOR_TUNING``), so rows are ordered from light to heavy, and an increase is a
lower bound once a heavier row ran before it.

A second table times the worst *legitimate* uploads (within every limit): how long one of them
holds a decode thread (``prepare_reference`` in this process, median of 3), and the server's
``decode_ms`` and memory for a ``/compare`` with it as the reference.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import httpx
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from app.config import Settings
from app.imaging import prepare_reference
from bench.common import machine
from tests.support import attacks
from tests.support.attacks import CONTENT_TYPE, KEY, Part
from tests.support.images import distort, encode, photo
from tests.support.servers import CLI, ROOT, ServerProcess, serve_process
from tests.support.sockets import connect

DEFAULTS = Settings(_env_file=None)
MIB = 1 << 20
Outcome = tuple[str, float]  # (answer, seconds to it)


# -- the server's memory and CPU ----------------------------------------------------------------


class Probe:
    """The server process's resident memory (``VmRSS``, ``VmHWM``) and CPU seconds."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.peak_mib = 0.0
        self.cpu_s = 0.0

    def status_kib(self, field: str) -> int:
        with open(f"/proc/{self.pid}/status") as handle:
            for line in handle:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
        raise KeyError(field)

    def cpu_seconds(self) -> float:
        with open(f"/proc/{self.pid}/stat") as handle:
            fields = handle.read().rpartition(")")[2].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def rss_mib(self) -> float:
        return self.status_kib("VmRSS") / 1024

    @contextlib.contextmanager
    def watch(self) -> Iterator[Probe]:
        """Sets ``peak_mib`` (the increase over the RSS at the start) and ``cpu_s``; the last
        samples stand if the process exits meanwhile."""
        with contextlib.suppress(OSError):
            Path(f"/proc/{self.pid}/clear_refs").write_text("5")  # VmHWM := VmRSS
        start_kib, start_cpu = self.status_kib("VmRSS"), self.cpu_seconds()
        peak_kib, cpu = [start_kib], [start_cpu]
        done = threading.Event()

        def sample() -> None:
            while True:
                with contextlib.suppress(OSError, KeyError):
                    peak_kib.append(max(self.status_kib("VmRSS"), self.status_kib("VmHWM")))
                    cpu.append(self.cpu_seconds())
                if done.wait(0.005):
                    return

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        try:
            yield self
        finally:
            done.set()
            sampler.join()
            self.peak_mib = (max(peak_kib) - start_kib) / 1024
            self.cpu_s = cpu[-1] - start_cpu


def table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A Markdown table, text left-aligned."""
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(headers)]

    def line(cells: Sequence[str]) -> str:
        return "| " + " | ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)) + " |"

    return "\n".join([line(headers), line(["-" * w for w in widths]), *map(line, rows)])


# -- requests -----------------------------------------------------------------------------------


def excerpt(text: str, length: int = 70) -> str:
    text = " ".join(text.split()).replace("|", "/")
    return text if len(text) <= length else text[: length - 3] + "..."


def answer_of(response: httpx.Response) -> str:
    try:
        found = response.json().get("detail", "")
    except ValueError:
        found = response.text
    return f"{response.status_code} {excerpt(str(found))}".strip()


def post(url: str, path: str, parts: Sequence[Part], key: str | None = KEY) -> httpx.Response:
    headers = {"Content-Type": CONTENT_TYPE, **(attacks.bearer(key) if key else {})}
    return httpx.post(url + path, content=attacks.form_body(parts), headers=headers, timeout=120)


def timed(fn: Callable[[], httpx.Response]) -> tuple[httpx.Response, float]:
    started = time.perf_counter()
    response = fn()
    return response, time.perf_counter() - started


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
        self.reference = encode(photo("astronaut", 224))
        self.candidate = encode(distort(photo("astronaut", 224), "jpeg"))

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

    def budgets(self, files: dict[str, bytes]) -> None:
        big = files["PNG 8000x5000"]
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
            parts = attacks.pair_parts(self.reference, self.candidate)
            response, took = timed(lambda: post(self.url, "/compare", parts))
            time.sleep(1.0)  # let the abandoned requests' log lines land
            gone = self.server.log().count('"status": 499') - before
            return f"next good request {answer_of(response)}; {gone} x 499 logged", took

        self.run(
            "4 requests abandoned mid-decode",
            f"4 x 2 x 40 Mpx PNG ({attacks.form_length(pair):,} B each)",
            abandoned,
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


# -- legitimate uploads at the limits -------------------------------------------------------------


def largest_under_cap(build: Callable[[float], bytes], noises: Sequence[float]) -> bytes:
    """The first of ``build(noise)`` (most detailed first) that fits SIMSCORE_MAX_UPLOAD_BYTES."""
    for noise in noises:
        data = build(noise)
        if len(data) <= DEFAULTS.max_upload_bytes:
            return data
    raise ValueError("no variant fits the upload cap")


def legitimate_files() -> dict[str, bytes]:
    """The slowest uploads within every default limit: at most SIMSCORE_MAX_UPLOAD_BYTES and
    SIMSCORE_MAX_PIXELS, within the JPEG scan budget; JPEGs as detailed as the cap allows."""
    from app.imaging.formats import MAX_JPEG_SCAN_PIXELS, MAX_JPEG_SCANS, jpeg_scans

    width, height = 8000, 5000  # 40,000,000 px
    allowed = min(MAX_JPEG_SCANS, MAX_JPEG_SCAN_PIXELS // (width * height))
    side = int((MAX_JPEG_SCAN_PIXELS / MAX_JPEG_SCANS) ** 0.5)

    def baseline(noise: float) -> bytes:
        return encode(attacks.detailed_photo(width, height, noise), "JPEG", quality=95)

    def at_scan_budget(w: int, h: int, scans: int) -> Callable[[float], bytes]:
        def build(noise: float) -> bytes:
            image = attacks.detailed_photo(w, h, noise)
            data = encode(image, "JPEG", quality=90, progressive=True)
            return attacks.with_repeated_last_scan(data, scans - jpeg_scans(data)[0])

        return build

    wide = attacks.large_photo(width, height)
    return {
        "JPEG 8000x5000, baseline": largest_under_cap(baseline, (8, 5, 2)),
        f"JPEG 8000x5000, progressive, {allowed} scans": largest_under_cap(
            at_scan_budget(width, height, allowed), (8, 5, 2, 0)
        ),
        f"JPEG {side}x{side}, progressive, {MAX_JPEG_SCANS} scans": largest_under_cap(
            at_scan_budget(side, side, MAX_JPEG_SCANS), (8, 5, 2, 0)
        ),
        "PNG 8000x5000": encode(wide, "PNG"),
        "GIF 6000x6000": encode(attacks.large_photo(6000, 6000).quantize(256), "GIF"),
        "WebP 16383x2441": encode(attacks.large_photo(16383, 2441), "WEBP", quality=80),
        "PNG 6000x6000, 16-bit grey, blank": attacks.png16_canvas(),
        "TIFF 6000x6000, 32-bit float, blank": attacks.float_tiff_canvas(),
    }


def decode_one(path: Path) -> None:
    """(Child process) One upload decoded as a reference: the memory its first decode adds in
    this fresh process (``Probe``), then the median of 3 timed decodes, as JSON."""
    data = path.read_bytes()

    def decode() -> float:
        started = time.perf_counter()
        prepare_reference(data, max_pixels=DEFAULTS.max_pixels, max_side=DEFAULTS.max_side)
        return time.perf_counter() - started

    probe = Probe(os.getpid())
    with probe.watch():
        decode()
    peak_mib = probe.peak_mib
    cpu = time.process_time()
    seconds = statistics.median(decode() for _ in range(3))
    cpu_s = (time.process_time() - cpu) / 3
    print(json.dumps({"seconds": seconds, "cpu_s": cpu_s, "peak_mib": peak_mib}))


def decode_bound(bench: AttackBench, files: dict[str, bytes], folder: Path) -> list[list[str]]:
    rows = []
    for index, (name, data) in enumerate(files.items()):
        path = folder / f"upload-{index}"
        path.write_bytes(data)
        out = subprocess.run(
            [sys.executable, __file__, "--decode-one", str(path)],
            capture_output=True,
            text=True,
            check=True,
            timeout=600,
        ).stdout
        alone = json.loads(out.strip().splitlines()[-1])
        parts = attacks.pair_parts(data, bench.candidate, metrics="mse")
        response = post(bench.url, "/compare", parts)
        served = (
            f"{response.json()['timing_ms']['decode_ms'] / 1000:.2f} s"
            if response.status_code == 200
            else answer_of(response)
        )
        rows.append(
            [
                name,
                f"{len(data):,}",
                f"{alone['seconds']:.2f} s",
                f"{alone['cpu_s']:.2f} s",
                f"{alone['peak_mib']:.0f}",
                served,
            ]
        )
        print(" | ".join(rows[-1]), file=sys.stderr, flush=True)
    return rows


# -- how far scores move with the CPU's kernels ---------------------------------------------------

SCORES = ("vgg", "style", "ssim", "mse", "psnr")
KERNELS: dict[str, dict[str, str]] = {
    "ATen kernels without SIMD": {"ATEN_CPU_CAPABILITY": "default"},
    "oneDNN capped at SSE4.1": {"ONEDNN_MAX_CPU_ISA": "SSE41"},
    "both of the above": {"ATEN_CPU_CAPABILITY": "default", "ONEDNN_MAX_CPU_ISA": "SSE41"},
    "1 torch thread": {"SIMSCORE_TORCH_THREADS": "1"},
    "contiguous NCHW (channels-last off)": {"SIMSCORE_CHANNELS_LAST": "false"},
}


def score_pairs() -> None:
    """(Child process) Scores of 8 photograph pairs at 224 px, alone and as one batch, JSON."""
    from app.scoring import PairRequest, build_scorer
    from tests.support.images import photo_pair

    settings = Settings(
        _env_file=None, weights="random", device="cpu", warmup_sides=[], reference_cache_size=0
    )
    scorer, _ = build_scorer(settings)
    pairs = [PairRequest(*photo_pair(224, seed)) for seed in range(8)]
    alone = [scorer.score([pair])[0] for pair in pairs]
    together = scorer.score(pairs)
    out = {
        "alone": [[getattr(s, n) for n in SCORES] for s in alone],
        "batch": [[getattr(s, n) for n in SCORES] for s in together],
    }
    print(json.dumps(out))


def cpu_kernels() -> None:
    """The largest relative change of each score between kernel choices on this CPU."""

    def run(env: dict[str, str]) -> dict[str, list[list[float]]]:
        out = subprocess.run(
            [sys.executable, __file__, "--score-pairs"],
            env={**os.environ, **env},
            capture_output=True,
            text=True,
            check=True,
            timeout=600,
        ).stdout
        found: dict[str, list[list[float]]] = json.loads(out.strip().splitlines()[-1])
        return found

    def moved(a: list[list[float]], b: list[list[float]]) -> list[str]:
        cells = []
        for i in range(len(SCORES)):
            worst = max(abs(x[i] - y[i]) / abs(y[i]) for x, y in zip(a, b, strict=True))
            cells.append(f"{worst:.1e}")
        return cells

    base = run({})
    rows = [["batch of 8 vs alone (default kernels)", *moved(base["batch"], base["alone"])]]
    for name, env in KERNELS.items():
        other = run(env)
        rows.append([name, *moved(other["alone"], base["alone"])])
    print(
        f"score movement, {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC, "
        f"{machine()}, load average {os.getloadavg()[0]:.2f}\n"
    )
    print(table(["kernels (vs this CPU's defaults, pairs alone)", *SCORES], rows))


# -- main -------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--skip-slow", action="store_true", help="leave out the slow clients")
    parser.add_argument(
        "--cpu-kernels", action="store_true", help="only: how far scores move with the kernels"
    )
    parser.add_argument("--score-pairs", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--decode-one", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.decode_one:
        decode_one(args.decode_one)
        return
    if args.score_pairs:
        score_pairs()
        return
    if args.cpu_kernels:
        cpu_kernels()
        return
    print("preparing the legitimate large files ...", file=sys.stderr, flush=True)
    files = legitimate_files()
    env = {
        "SIMSCORE_WEIGHTS": "random",
        "SIMSCORE_DEVICE": "cpu",
        "SIMSCORE_WARMUP_SIDES": "224",
        "SIMSCORE_API_KEYS": KEY,
    }
    log_dir = Path(tempfile.mkdtemp(prefix="simscore-attacks-"))
    started = datetime.datetime.now(datetime.timezone.utc)
    load_before = os.getloadavg()
    with serve_process(env, log_dir / "server.log") as server:
        bench = AttackBench(server)
        post(server.url, "/compare", attacks.pair_parts(bench.reference, bench.candidate))
        idle_mib = bench.probe.rss_mib()
        bench.well_behaved("well-behaved client (control, first)")
        bench.keys()
        bench.limits()
        if not args.skip_slow:
            bench.slow_clients()
        bench.hostile_files()
        bench.upload_memory()
        bench.budgets(files)
        bench.well_behaved("well-behaved client (control, after the attacks)")
        decode_rows = decode_bound(bench, files, log_dir)
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
    headers = ["attack", "sent", "answer", "time to answer", "server CPU s", "peak RSS MiB"]
    print(table(headers, [row.cells() for row in bench.rows]))
    print()
    headers = [
        "legitimate upload",
        "bytes",
        "decode (one thread)",
        "its CPU",
        "peak MiB",
        "server decode_ms (+ a 224 px candidate)",
    ]
    print(table(headers, decode_rows))
    print(f"\nserver log: {log_dir / 'server.log'}")


if __name__ == "__main__":
    main()
