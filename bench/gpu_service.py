"""``bench/gpu.py``'s sections that run other processes: ``tests/gpu`` under pytest, the service
over HTTP (``simscore serve``), and the engine benchmark's table. Each reports its rows with
``bench.sections.emit`` as it has them; servers' logs go to a scratch folder (what comes back from
a device call is a few files), the tail of a refusing server's log into its row.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.common import ROOT
from bench.sections import ENDS_AT, emit
from devtools.env import child_env

HTTP_PACKAGES = ("fastapi", "uvicorn", "pydantic_settings", "python_multipart", "httpx")
TEST_PLUGINS = ("pytest_asyncio.plugin", "pytest_timeout")
RESULT = re.compile(r"^(tests/\S+::\S+) (PASSED|FAILED|ERROR|SKIPPED|XFAIL|XPASS)\b")
SUMMARY = re.compile(r"^(FAILED|ERROR) (tests/\S+::\S+)(?: - (.*))?$")


def gpu_tests(args: argparse.Namespace) -> None:
    """``pytest tests/gpu``: a row per test as it ends, then the counts and the failures. Plugins
    are named (autoloading off), so plugins of the machine's image cannot get in the way."""
    needed = ("pytest", *(plugin.split(".")[0] for plugin in TEST_PLUGINS))
    missing = [name for name in needed if importlib.util.find_spec(name) is None]
    if missing:
        emit({"status": f"skipped: {', '.join(missing)} not installed (bench/gpu_wheels.sh)"})
        return
    command = [
        sys.executable,
        "-m",
        "pytest",
        "tests/gpu",
        "-v",
        "-rfE",
        "-p",
        "no:cacheprovider",
        "-o",
        f"timeout={args.test_timeout_s:g}",
    ]
    for plugin in TEST_PLUGINS:
        command += ["-p", plugin]
    env = child_env({"PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1", "PYTHONPATH": str(ROOT)})
    counts: dict[str, int] = {}
    failures: dict[str, str] = {}
    started = time.monotonic()
    with subprocess.Popen(
        command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    ) as pytest:
        assert pytest.stdout is not None
        for line in pytest.stdout:
            print(line.rstrip(), flush=True)
            if found := RESULT.match(line):
                test, outcome = found.groups()
                counts[outcome.lower()] = counts.get(outcome.lower(), 0) + 1
                emit({"test": test, "outcome": outcome.lower()})
            elif found := SUMMARY.match(line.strip()):
                failures[found.group(2)] = (found.group(3) or "")[:300]
    emit(
        {
            "what": "summary",
            "exit_code": pytest.returncode,
            **counts,
            "failures": failures,
            "seconds": round(time.monotonic() - started, 1),
            "status": "ok" if pytest.returncode == 0 else "failed",
        }
    )


def http(args: argparse.Namespace) -> None:
    """The service over HTTP at ``--http-side`` px, closed-loop clients (16 and 64 by default),
    every pair its own reference (cache off): bf16 (compiled, as the service runs it) without
    and with ``SIMSCORE_OVERLAP_BATCHES``, and fp32 with TF32 off."""
    missing = [name for name in HTTP_PACKAGES if importlib.util.find_spec(name) is None]
    if missing:
        emit({"status": f"skipped: {', '.join(missing)} not installed (bench/gpu_wheels.sh)"})
        return
    from bench.http_load import refusal, run_load, service_env, serving, square_bodies
    from bench.server_probe import Probe

    scratch = Path(tempfile.mkdtemp(prefix="simscore-http-"))
    bodies = square_bodies(args.http_side, max(2 * max(args.http_clients), 64))
    ends_at = float(os.environ.get(ENDS_AT, "inf"))
    configs = [("bf16", False), ("bf16", True), ("fp32", False)]
    for number, (precision, overlap) in enumerate(configs):
        tf32 = precision != "fp32"  # the service's default: TF32 for the backbone unless fp32
        env = service_env(
            device=args.device,
            precision=precision,
            tf32=str(tf32).lower(),
            overlap_batches=str(overlap).lower(),
            max_batch_size=args.http_batch,
            warmup_sides=args.http_side,
            compile_cache_dir=scratch / "inductor",
            max_concurrent_requests=4 * max(args.http_clients),
        )
        config = {
            "precision": precision,
            "tf32": tf32,
            "overlap": overlap,
            "batch": args.http_batch,
        }
        log = scratch / f"server-{number}.log"
        try:
            ready_timeout_s = max(10.0, ends_at - time.time())
            with serving(env, log, ready_timeout_s=ready_timeout_s) as (server, ready_s):
                emit({**config, "what": "ready", "seconds": round(ready_s, 1)})
                run_load(server.url, bodies, clients=max(args.http_clients), seconds=2)  # warm
                probe = Probe(server.process.pid)
                for clients in args.http_clients:
                    cpu_before = probe.cpu_seconds()
                    load = run_load(
                        server.url,
                        bodies,
                        clients=clients,
                        seconds=args.http_seconds,
                        pid=server.process.pid,
                    )
                    cpu = probe.cpu_seconds() - cpu_before
                    emit(
                        {
                            **config,
                            **load.summary(),
                            "server_cpu_s_per_pair": round(cpu / max(len(load.done_at), 1), 4),
                        }
                    )
        except RuntimeError:
            text = log.read_text(errors="replace") if log.exists() else ""
            emit(
                {
                    **config,
                    "status": "refused: " + refusal(text),
                    "log_tail": text.splitlines()[-15:],
                }
            )


def table(args: argparse.Namespace) -> None:
    """``bench/engine.py``'s table on the device (plain and tuned model alone, the service over
    HTTP in fp32 and bf16, piq): long; not in the default sections."""
    from bench import engine

    table_args = engine.parse_args(
        [
            f"--device={args.device}",
            f"--side={args.http_side}",
            f"--pairs={args.http_batch}",
            f"--clients={max(args.http_clients)}",
            "--rounds=2",
            "--batches=10",
            f"--http-seconds={args.http_seconds:g}",
        ]
    )
    text, data = engine.service_table(table_args, Path(tempfile.mkdtemp(prefix="simscore-table-")))
    print(text, flush=True)
    emit(
        {"median_pairs_per_s": data["median"], "verdicts": data["verdicts"], "notes": data["notes"]}
    )
