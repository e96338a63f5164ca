"""A benchmark run as sections, each in a child process with a deadline of its own, the results
written to one JSON file after every row.

A lent GPU machine gives one call with a hard time limit: a section that hangs (a compile that
never ends, a wedged device) or runs long must not take the call down with what came before it.
So each section runs as its own process (in a process group of its own, with whatever servers it
starts); past its deadline the whole group is killed and the run goes on to the next section.
A child reports each result as it has it (``emit``: one ``@@row`` line of JSON on stdout); the
parent adds it to the report and rewrites the file at once, so a run cut short keeps every row
measured before the cut.

    report = Report(out / "gpu.json", {"argv": sys.argv})
    run_sections([Section("sweep", 90, [python, "bench/gpu.py", "--child", "sweep"])],
                 report, budget_s=420)
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import signal
import subprocess
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROW_PREFIX = "@@row "
ENDS_AT = "BENCH_SECTION_ENDS_AT"  # in a section's environment: its deadline, as time.time()
LOG_TAIL_LINES = 30
EXIT_GRACE_S = 2.0  # after the child exits, how long its grandchildren may hold the pipe
MIN_SECTION_S = 10.0  # a section that would get less than this is skipped


def emit(row: Mapping[str, Any]) -> None:
    """In a section's process: report one result row to the parent."""
    print(ROW_PREFIX + json.dumps(row, default=str), flush=True)


@dataclass(frozen=True)
class Section:
    """A section: its name, its own deadline, and the command that runs it."""

    name: str
    deadline_s: float
    command: Sequence[str]


class Report:
    """The run's JSON file: ``info`` and, per section, its status, seconds and rows; rewritten
    whole (to a temporary file, then renamed) after every change."""

    def __init__(self, path: Path, info: Mapping[str, Any]) -> None:
        self.path = path
        self.data: dict[str, Any] = {"info": dict(info), "sections": {}}
        self.save()

    def section(self, name: str) -> dict[str, Any]:
        sections: dict[str, dict[str, Any]] = self.data["sections"]
        return sections.setdefault(name, {"status": "running", "seconds": 0.0, "rows": []})

    def save(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        partial = self.path.with_suffix(".partial")
        partial.write_text(json.dumps(self.data, indent=2, default=str))
        partial.replace(self.path)


def run_sections(
    sections: Sequence[Section],
    report: Report,
    *,
    budget_s: float,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
    echo: Callable[[str], None] = print,
) -> None:
    """Run ``sections`` in order, each within ``min(its deadline, what is left of budget_s)``;
    a section left less than ``MIN_SECTION_S`` is skipped."""
    started = time.monotonic()
    for section in sections:
        left = budget_s - (time.monotonic() - started)
        entry = report.section(section.name)
        if left < MIN_SECTION_S:
            entry["status"] = f"skipped: {max(left, 0):.0f} s of the {budget_s:.0f} s budget left"
            report.save()
            echo(f"## {section.name}: {entry['status']}")
            continue
        limit = min(section.deadline_s, left)
        echo(f"## {section.name} (deadline {limit:.0f} s)")
        run_section(section, limit, report, env=env, cwd=cwd, echo=echo)
        echo(f"## {section.name}: {entry['status']} in {entry['seconds']:.0f} s")


def run_section(
    section: Section,
    limit_s: float,
    report: Report,
    *,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
    echo: Callable[[str], None] = print,
) -> None:
    """One section in its own process group, killed whole at ``limit_s``."""
    entry = report.section(section.name)
    tail: deque[str] = deque(maxlen=LOG_TAIL_LINES)
    started = time.monotonic()
    child_env = {**(os.environ if env is None else env), ENDS_AT: f"{time.time() + limit_s:.1f}"}
    process = subprocess.Popen(
        list(section.command),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        text=True,
        env=child_env,
        cwd=cwd,
        start_new_session=True,  # its own process group: killed with what it started
    )
    lines = _lines_of(process)
    deadline = started + limit_s
    exited_at: float | None = None
    status = ""
    while not status:
        now = time.monotonic()
        if now >= deadline:
            status = f"timed out: killed at its deadline ({limit_s:.0f} s)"
            break
        if exited_at is None and process.poll() is not None:
            exited_at = now
        if exited_at is not None and now - exited_at > EXIT_GRACE_S:
            break  # exited; what still holds the pipe is killed below
        try:
            line = lines.get(timeout=min(0.5, deadline - now))
        except queue.Empty:
            continue
        if line is None:
            break
        if line.startswith(ROW_PREFIX):
            entry["rows"].append(json.loads(line[len(ROW_PREFIX) :]))
            entry["seconds"] = round(time.monotonic() - started, 1)
            report.save()
        else:
            tail.append(line)
        echo(f"[{section.name}] {line}")
    _kill_group(process)
    code = process.wait()
    entry["seconds"] = round(time.monotonic() - started, 1)
    entry["status"] = status or ("ok" if code == 0 else f"failed: exit {code}")
    if entry["status"] != "ok":
        entry["log_tail"] = list(tail)
    report.save()


def _lines_of(process: subprocess.Popen[str]) -> queue.Queue[str | None]:
    """The child's output lines, read on a thread (None at the end)."""
    lines: queue.Queue[str | None] = queue.Queue()

    def read() -> None:
        assert process.stdout is not None
        for line in process.stdout:
            lines.put(line.rstrip("\n"))
        lines.put(None)

    threading.Thread(target=read, name="section-output", daemon=True).start()
    return lines


def _kill_group(process: subprocess.Popen[str]) -> None:
    """SIGKILL the section's process group (the child and anything it started)."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)
