"""What deploy/proxy_check.py measures: one function per client behaviour, each returning a
``Result`` (expected, observed, seconds, ok) for nginx at ``Stack.url`` in front of a simscore
server whose request log ``Stack.app_saw`` reads. The expected values come from the nginx
configuration (``Limits.from_config``).

* ``half-header``: request line and half the headers, then silence -> cut at
  ``client_header_timeout``;
* ``header-drip``: a header line every 3 s, never finished -> cut at the same time, because that
  timeout is one deadline, not a pause limit;
* ``half-body``: headers and 40 % of the declared body, then silence -> cut
  ``client_body_timeout`` after the last byte, and the app never saw the request;
* ``idle-keepalive``: one answered request, then silence -> closed at ``keepalive_timeout``;
* ``oversize``: ``Content-Length`` one byte over ``client_max_body_size`` -> 413 from nginx
  before a byte of the body is sent, and the app never saw the request;
* ``oversize-chunked``: a chunked body streamed past the limit -> 413, the app never saw it;
* ``request-id``: a valid ``X-Request-ID`` reaches the app and comes back; an invalid one is
  replaced by nginx's, which the app logs (the positive control for "never saw it");
* ``compare``: a real ``POST /compare`` through the proxy answers 200 with scores;
* ``metrics-hidden``: ``/metrics`` is not served through the proxy;
* ``framing``: every request-smuggling shape of ``devtools/framing.py`` (both
  ``Content-Length`` and ``Transfer-Encoding``, duplicate lengths, obs-fold, a
  ``Transfer-Encoding`` other than chunked) is refused by nginx (400, or 501 for an unknown
  transfer coding) with the connection closed; the request after it on the connection is never
  answered, and the app never saw either;
* ``limit-conn``, ``limit-req``: per-address limits answer 429.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import httpx

from deploy import nginx_conf
from devtools.framing import FRAMING_CASES, send_with_smuggled
from devtools.images import photo_png
from devtools.servers import ServerProcess
from devtools.sockets import connect, read_until_closed

# Timings are accepted this much early / late (nginx's timers and thread scheduling).
EARLY_S = 0.5
LATE_S = 2.0


@dataclass
class Limits:
    """What the configuration promises, read from it."""

    header_timeout_s: float
    body_timeout_s: float
    keepalive_timeout_s: float
    max_body_bytes: int
    limit_conn: int
    limit_req_burst: int
    limit_req_rate_per_s: float

    @classmethod
    def from_config(cls, config: nginx_conf.Directive) -> Limits:
        http = config.one("http")
        server = http.one("server")
        burst = next(arg for arg in server.one("limit_req").args if arg.startswith("burst="))
        rate = next(arg for arg in http.one("limit_req_zone").args if arg.startswith("rate="))
        return cls(
            header_timeout_s=nginx_conf.seconds(http.value("client_header_timeout")),
            body_timeout_s=nginx_conf.seconds(http.value("client_body_timeout")),
            keepalive_timeout_s=nginx_conf.seconds(http.value("keepalive_timeout")),
            max_body_bytes=nginx_conf.size_bytes(http.value("client_max_body_size")),
            limit_conn=int(server.one("limit_conn").args[1]),
            limit_req_burst=int(burst.removeprefix("burst=")),
            limit_req_rate_per_s=float(rate.removeprefix("rate=").removesuffix("r/s")),
        )


@dataclass
class Result:
    """One check: what was expected, what was observed, and whether they agree."""

    name: str
    expected: str
    observed: str
    seconds: float | None
    ok: bool


@dataclass
class Stack:
    """nginx in front of a running simscore server."""

    url: str
    host: str
    port: int
    server: ServerProcess
    workdir: Path

    def app_saw(self, request_id: str, wait_s: float = 1.0) -> bool:
        """Whether the app logged a request with this id (it logs after answering, so give it
        ``wait_s`` to appear)."""
        deadline = time.monotonic() + wait_s
        while f'"request_id": "{request_id}"' not in self.server.log():
            if time.monotonic() > deadline:
                return False
            time.sleep(0.05)
        return True

    def connect(self) -> socket.socket:
        return connect(f"http://{self.host}:{self.port}", timeout_s=5)


def _within(elapsed: float, expected: float) -> bool:
    return expected - EARLY_S <= elapsed <= expected + LATE_S


def _wait_closed(sock: socket.socket, timeout_s: float) -> tuple[float, bytes]:
    """Read until the peer closes; the monotonic time it closed (or gave up) and what it sent."""
    closed_at, received = read_until_closed(sock, timeout_s)
    return closed_at if closed_at is not None else time.monotonic(), received


def _status(response: bytes) -> str:
    if not response:
        return "closed, no response"
    return response.split(b"\r\n", 1)[0].decode("latin-1")


def _request_head(method: str, path: str, request_id: str, extra: str = "") -> bytes:
    return (
        f"{method} {path} HTTP/1.1\r\nHost: simscore\r\nX-Request-ID: {request_id}\r\n{extra}\r\n"
    ).encode()


# --- slow clients ------------------------------------------------------------------------------


def check_half_header(stack: Stack, limits: Limits) -> Result:
    sock = stack.connect()
    started = time.monotonic()
    sock.sendall(b"POST /compare HTTP/1.1\r\nHost: simscore\r\nX-Request-ID: check-half-header\r\n")
    closed, response = _wait_closed(sock, limits.header_timeout_s + 30)
    sock.close()
    elapsed = closed - started
    return Result(
        "half-header",
        f"closed after client_header_timeout {limits.header_timeout_s:g} s",
        _status(response),
        elapsed,
        _within(elapsed, limits.header_timeout_s),
    )


def check_header_drip(stack: Stack, limits: Limits) -> Result:
    sock = stack.connect()
    started = time.monotonic()
    sock.sendall(b"GET /healthz HTTP/1.1\r\n")
    closed_at: list[float] = []
    response = b""

    def reader() -> None:
        nonlocal response
        at, response = _wait_closed(sock, limits.header_timeout_s + 30)
        closed_at.append(at)

    thread = threading.Thread(target=reader, daemon=True)
    thread.start()
    line = 0
    while thread.is_alive() and time.monotonic() - started < limits.header_timeout_s + 30:
        try:
            sock.sendall(f"X-Drip-{line}: {line}\r\n".encode())
        except OSError:
            break
        line += 1
        thread.join(3)
    thread.join()
    sock.close()
    elapsed = closed_at[0] - started
    return Result(
        "header-drip",
        f"a line every 3 s still cut at {limits.header_timeout_s:g} s (one deadline)",
        f"{_status(response)} after {line} lines",
        elapsed,
        _within(elapsed, limits.header_timeout_s),
    )


def check_half_body(stack: Stack, limits: Limits) -> Result:
    request_id = "check-half-body"
    declared = 1_000_000
    sock = stack.connect()
    sock.sendall(
        _request_head(
            "POST",
            "/compare",
            request_id,
            f"Content-Type: multipart/form-data; boundary=x\r\nContent-Length: {declared}\r\n",
        )
    )
    sock.sendall(b"\0" * (declared * 4 // 10))
    last_byte = time.monotonic()
    closed, response = _wait_closed(sock, limits.body_timeout_s + 30)
    sock.close()
    elapsed = closed - last_byte
    reached_app = stack.app_saw(request_id)
    return Result(
        "half-body",
        f"cut client_body_timeout {limits.body_timeout_s:g} s after the last byte; "
        "the app never sees it",
        f"{_status(response)}; app saw it: {reached_app}",
        elapsed,
        _within(elapsed, limits.body_timeout_s) and not reached_app,
    )


def check_idle_keepalive(stack: Stack, limits: Limits) -> Result:
    sock = stack.connect()
    sock.sendall(_request_head("GET", "/healthz", "check-keepalive"))
    sock.settimeout(10)
    answer = sock.recv(65536)
    answered = time.monotonic()
    closed, _ = _wait_closed(sock, limits.keepalive_timeout_s + 30)
    sock.close()
    elapsed = closed - answered
    return Result(
        "idle-keepalive",
        f"idle connection closed at keepalive_timeout {limits.keepalive_timeout_s:g} s",
        f"{_status(answer)}, then closed",
        elapsed,
        _within(elapsed, limits.keepalive_timeout_s),
    )


# --- sizes -------------------------------------------------------------------------------------


def check_oversize(stack: Stack, limits: Limits) -> Result:
    request_id = "check-oversize"
    sock = stack.connect()
    started = time.monotonic()
    sock.sendall(
        _request_head(
            "POST",
            "/compare",
            request_id,
            "Content-Type: multipart/form-data; boundary=x\r\n"
            f"Content-Length: {limits.max_body_bytes + 1}\r\n",
        )
    )
    sock.settimeout(10)
    response = sock.recv(65536)
    elapsed = time.monotonic() - started
    sock.close()
    status = _status(response)
    reached_app = stack.app_saw(request_id)
    from_proxy = b"SIMSCORE_MAX_REQUEST_BYTES" in response
    return Result(
        "oversize",
        f"413 for Content-Length {limits.max_body_bytes + 1} before any body byte; "
        "the app never sees it",
        f"{status}; nginx's JSON: {from_proxy}; app saw it: {reached_app}",
        elapsed,
        " 413 " in status and from_proxy and not reached_app and elapsed < 1,
    )


def check_oversize_chunked(stack: Stack, limits: Limits) -> Result:
    request_id = "check-oversize-chunked"
    chunk = b"\0" * (1 << 20)
    sent = 0
    sock = stack.connect()
    started = time.monotonic()
    sock.sendall(
        _request_head(
            "POST",
            "/compare",
            request_id,
            "Content-Type: multipart/form-data; boundary=x\r\nTransfer-Encoding: chunked\r\n",
        )
    )
    try:
        while sent <= limits.max_body_bytes + len(chunk):
            sock.sendall(b"%x\r\n%s\r\n" % (len(chunk), chunk))
            sent += len(chunk)
    except OSError:
        pass  # nginx answered and stopped reading
    _, response = _wait_closed(sock, 10)
    elapsed = time.monotonic() - started
    sock.close()
    status = _status(response)
    reached_app = stack.app_saw(request_id)
    return Result(
        "oversize-chunked",
        "413 once a chunked body passes the limit; the app never sees it",
        f"{status} after {sent / 1e6:.0f} MB sent; app saw it: {reached_app}",
        elapsed,
        " 413 " in status and not reached_app,
    )


# --- request ids, a real request, hidden metrics, per-address limits ---------------------------


def check_request_id(stack: Stack, limits: Limits) -> Result:
    given = "check-request-id.1"
    echoed = httpx.get(f"{stack.url}/readyz", headers={"X-Request-ID": given}, timeout=10)
    compare = httpx.post(
        f"{stack.url}/compare",
        headers={"X-Request-ID": "not a valid id!"},
        files={"reference": photo_png("astronaut"), "candidate": photo_png("chelsea")},
        timeout=60,
    )
    replaced = compare.headers.get("x-request-id", "")
    logged = stack.app_saw(replaced)
    ok = (
        echoed.headers.get("x-request-id") == given
        and len(replaced) == 32
        and logged
        and compare.json().get("request_id", replaced) == replaced
    )
    return Result(
        "request-id",
        "a valid id comes back; an invalid one is replaced by nginx's, which the app logs",
        f"echoed {echoed.headers.get('x-request-id')!r}; replaced by {replaced!r}, "
        f"in the app's log: {logged}",
        None,
        ok,
    )


def check_compare(stack: Stack, limits: Limits) -> Result:
    started = time.monotonic()
    response = httpx.post(
        f"{stack.url}/compare",
        files={"reference": photo_png("coffee"), "candidate": photo_png("rocket")},
        timeout=60,
    )
    elapsed = time.monotonic() - started
    scores = response.json().get("scores", {}) if response.status_code == 200 else {}
    return Result(
        "compare",
        "POST /compare through the proxy: 200 with scores",
        f"{response.status_code}, scores: {sorted(scores)}",
        elapsed,
        response.status_code == 200 and "vgg" in scores,
    )


def check_metrics_hidden(stack: Stack, limits: Limits) -> Result:
    through_proxy = httpx.get(f"{stack.url}/metrics", timeout=10)
    direct = httpx.get(f"{stack.server.url}/metrics", timeout=10)
    return Result(
        "metrics-hidden",
        "/metrics: 404 through the proxy, served by the app directly",
        f"proxy {through_proxy.status_code}, app {direct.status_code}",
        None,
        through_proxy.status_code == 404 and direct.status_code == 200,
    )


def check_framing(stack: Stack, limits: Limits) -> Result:
    started = time.monotonic()
    seen: list[str] = []
    ok = True
    for index, case in enumerate(FRAMING_CASES):
        request_id = f"framing-{index}-{time.time_ns()}"
        answer = send_with_smuggled(stack.url, case, extra=(f"X-Request-ID: {request_id}",))
        refused = len(answer.statuses) == 1 and answer.statuses[0] in (400, 501)
        reached = stack.app_saw(request_id, wait_s=0.2)
        ok = ok and refused and answer.closed and not answer.smuggled_answered and not reached
        seen.append(f"{case.name}: {answer.describe()}{', reached the app' if reached else ''}")
    return Result(
        "framing",
        f"{len(FRAMING_CASES)} smuggling shapes: each 400 or 501, closed, never reaching the app",
        "; ".join(seen),
        time.monotonic() - started,
        ok,
    )


def check_limit_conn(stack: Stack, limits: Limits) -> Result:
    """Hold ``limit_conn`` requests open (half-sent bodies), then ask for one more."""
    held: list[socket.socket] = []
    try:
        for index in range(limits.limit_conn):
            sock = stack.connect()
            sock.sendall(
                _request_head("POST", "/compare", f"check-held-{index}", "Content-Length: 100\r\n")
            )
            held.append(sock)
        # nginx counts a request once it has read its head: retry until all are counted.
        deadline = time.monotonic() + 5
        while True:
            extra = httpx.get(f"{stack.url}/healthz", timeout=10)
            if extra.status_code == 429 or time.monotonic() > deadline:
                break
            time.sleep(0.2)
    finally:
        for sock in held:
            sock.close()
    time.sleep(0.5)
    after = httpx.get(f"{stack.url}/healthz", timeout=10)
    return Result(
        "limit-conn",
        f"request {limits.limit_conn + 1} from one address while {limits.limit_conn} are "
        "open: 429; after they close: 200",
        f"{extra.status_code} (Retry-After {extra.headers.get('retry-after')}), then "
        f"{after.status_code}",
        None,
        extra.status_code == 429 and after.status_code == 200,
    )


def check_limit_req(stack: Stack, limits: Limits) -> Result:
    """Back-to-back requests from a full bucket until the first 429 (at most 400)."""
    time.sleep(limits.limit_req_burst / limits.limit_req_rate_per_s + 0.5)  # a full bucket
    statuses: list[int] = []
    started = time.monotonic()
    with httpx.Client(base_url=stack.url, timeout=10) as client:
        while 429 not in statuses and len(statuses) < 400:
            statuses.append(client.get("/healthz").status_code)
    elapsed = time.monotonic() - started
    passed = statuses.count(200)
    # With a full bucket, burst + 1 pass at once, plus what the rate refills meanwhile.
    most = limits.limit_req_burst + 1 + limits.limit_req_rate_per_s * elapsed + 1
    return Result(
        "limit-req",
        f"back-to-back requests: 429 after burst+1 = {limits.limit_req_burst + 1} plus "
        f"{limits.limit_req_rate_per_s:g}/s refill",
        f"first 429 after {passed} x 200",
        elapsed,
        429 in statuses and limits.limit_req_burst <= passed <= most,
    )


SLOW_CHECKS: tuple[Callable[[Stack, Limits], Result], ...] = (
    check_half_header,
    check_header_drip,
    check_half_body,
    check_idle_keepalive,
)
QUICK_CHECKS: tuple[Callable[[Stack, Limits], Result], ...] = (
    check_oversize,
    check_oversize_chunked,
    check_request_id,
    check_compare,
    check_metrics_hidden,
    check_framing,
)
# Last and alone: they need the address's connection and rate budget to themselves.
LIMIT_CHECKS: tuple[Callable[[Stack, Limits], Result], ...] = (check_limit_conn, check_limit_req)
