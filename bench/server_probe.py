"""A real ``simscore serve`` measured from outside, shared by ``bench/attacks.py`` and
``bench/decode_bound.py``; not a script.

The server runs as production would, less the model: ``SIMSCORE_WEIGHTS=random``, CPU, warmed up
at 224 px, one API key set, every other setting at its default. ``Probe`` reads a process's
resident memory and CPU seconds from ``/proc``; ``post`` sends a multipart form with the key and
``answer_of`` puts the answer in one table cell.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import httpx

from app.config import Settings
from devtools import attacks
from devtools.attacks import CONTENT_TYPE, KEY, Part
from devtools.images import distort, encode, photo
from devtools.servers import ServerProcess, serve_process

DEFAULTS = Settings(_env_file=None)
SERVER_ENV = {
    "SIMSCORE_WEIGHTS": "random",
    "SIMSCORE_DEVICE": "cpu",
    "SIMSCORE_WARMUP_SIDES": "224",
    "SIMSCORE_API_KEYS": KEY,
}


def control_pair() -> tuple[bytes, bytes]:
    """A well-behaved client's pair: a 224 px PNG photograph and a JPEG of it."""
    return encode(photo("astronaut", 224)), encode(distort(photo("astronaut", 224), "jpeg"))


@contextlib.contextmanager
def serving(log_prefix: str) -> Iterator[ServerProcess]:
    """``simscore serve`` with ``SERVER_ENV``, its log in a new temporary folder, sent one
    ``control_pair`` before the block starts; SIGTERM when it ends (unless stopped already)."""
    log_dir = Path(tempfile.mkdtemp(prefix=log_prefix))
    with serve_process(SERVER_ENV, log_dir / "server.log") as server:
        post(server.url, "/compare", attacks.pair_parts(*control_pair()))
        yield server


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

    def stat_fields(self) -> list[str]:
        """``/proc/PID/stat`` after the command name (field 3 onwards)."""
        with open(f"/proc/{self.pid}/stat") as handle:
            return handle.read().rpartition(")")[2].split()

    def cpu_seconds(self) -> float:
        fields = self.stat_fields()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def minor_faults(self) -> int:
        """Minor page faults so far (large counts per batch mean memory mapped in afresh)."""
        return int(self.stat_fields()[7])

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


# -- requests -----------------------------------------------------------------------------------


def excerpt(text: str, length: int = 70) -> str:
    """``text`` on one line, shortened to ``length``, safe in a Markdown table cell."""
    text = " ".join(text.split()).replace("|", "/")
    return text if len(text) <= length else text[: length - 3] + "..."


def answer_of(response: httpx.Response) -> str:
    """The status and the start of the answer's ``detail``."""
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
