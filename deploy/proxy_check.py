"""Measure what the nginx proxy enforces, with the shipped deploy/nginx/nginx.conf in front of a
real ``simscore serve`` (CPU, random weights), both on loopback.

    python -m deploy.proxy_check [--nginx /usr/sbin/nginx] [--json out.json]

Only addresses and paths of the configuration change (``deploy.nginx_conf.render_local``); the
expected times and sizes are read from the configuration itself. The checks are in
``deploy.proxy_probes``: slow headers and bodies, idle keep-alive, over-size bodies, request ids,
a real ``/compare``, hidden ``/metrics`` and the per-address limits. The slow checks run at the
same time, so the whole run takes about ``client_body_timeout`` plus the server's start. Exit
code 0 when every check passes. Needs nginx (Debian's ``nginx-light`` is enough) and the project
venv, from the repository root.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import asdict
from pathlib import Path

from deploy import nginx_conf
from deploy.proxy_probes import LIMIT_CHECKS, QUICK_CHECKS, SLOW_CHECKS, Limits, Result, Stack
from devtools.servers import free_port, serve_process

# The app behind the proxy: CPU, random weights, no warm-up, the deployment's timeouts.
APP_ENV = {
    "SIMSCORE_WEIGHTS": "random",
    "SIMSCORE_DEVICE": "cpu",
    "SIMSCORE_WARMUP_SIDES": "",
    "SIMSCORE_REQUEST_TIMEOUT_S": "30",
    "SIMSCORE_DRAIN_TIMEOUT_S": "35",
    "SIMSCORE_KEEPALIVE_TIMEOUT_S": "65",
    "SIMSCORE_LOG_LEVEL": "info",
}


# --- running nginx and the app -----------------------------------------------------------------


def find_nginx() -> str | None:
    """nginx on PATH or in the usual sbin directories."""
    return shutil.which("nginx") or shutil.which("nginx", path="/usr/sbin:/usr/local/sbin")


@contextmanager
def running_nginx(
    nginx: str, upstream: str, workdir: Path, config_path: Path = nginx_conf.NGINX_CONF
) -> Iterator[tuple[str, int]]:
    """The shipped configuration, rendered for loopback, in a foreground nginx."""
    port = free_port()
    rendered = workdir / "nginx.conf"
    rendered.write_text(
        nginx_conf.render_local(
            config_path.read_text(), upstream=upstream, listen=f"127.0.0.1:{port}", workdir=workdir
        )
    )
    command = [nginx, "-c", str(rendered), "-e", str(workdir / "error.log")]
    test = subprocess.run([*command, "-t"], capture_output=True, text=True, check=False)  # noqa: S603
    if test.returncode != 0:
        raise RuntimeError(f"nginx -t failed:\n{test.stderr}")
    process = subprocess.Popen(command, stderr=subprocess.PIPE)  # noqa: S603
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError as exc:
                if process.poll() is not None or time.monotonic() > deadline:
                    error_log = (workdir / "error.log").read_text()
                    raise RuntimeError(f"nginx did not start: {error_log}") from exc
                time.sleep(0.05)
        yield "127.0.0.1", port
    finally:
        process.terminate()  # SIGTERM: fast shutdown
        process.wait(10)


@contextmanager
def running_stack(nginx: str) -> Iterator[Stack]:
    """A ``simscore serve`` process with nginx in front of it, both on loopback."""
    with tempfile.TemporaryDirectory(prefix="simscore-proxy-") as tmp:
        workdir = Path(tmp)
        # nginx's workers may run as another user (nginx started as root): let them in.
        workdir.chmod(0o755)
        with (
            serve_process(APP_ENV, workdir / "app.log") as server,
            running_nginx(nginx, server.url.removeprefix("http://"), workdir) as (host, port),
        ):
            yield Stack(f"http://{host}:{port}", host, port, server, workdir)


def run_checks(stack: Stack, limits: Limits) -> list[Result]:
    """The slow checks at once, the quick ones meanwhile, then the per-address limits."""
    with ThreadPoolExecutor(max_workers=len(SLOW_CHECKS)) as pool:
        slow = [pool.submit(check, stack, limits) for check in SLOW_CHECKS]
        quick = [check(stack, limits) for check in QUICK_CHECKS]
        results = [future.result() for future in slow] + quick
    time.sleep(limits.limit_req_burst / limits.limit_req_rate_per_s + 0.5)  # a full bucket
    return results + [check(stack, limits) for check in LIMIT_CHECKS]


def table(results: list[Result]) -> str:
    lines = [f"{'check':17s} {'ok':4s} {'seconds':>8s}  observed  [expected]"]
    for result in results:
        seconds = "" if result.seconds is None else f"{result.seconds:8.2f}"
        lines.append(
            f"{result.name:17s} {'yes' if result.ok else 'NO':4s} {seconds:>8s}  "
            f"{result.observed}  [{result.expected}]"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--nginx", default=find_nginx(), help="nginx binary")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args(argv)
    if not args.nginx:
        parser.error("no nginx found: install Debian's nginx-light or pass --nginx")
    limits = Limits.from_config(nginx_conf.load())
    started = time.monotonic()
    with running_stack(args.nginx) as stack:
        results = run_checks(stack, limits)
    print(table(results))
    version = subprocess.run(  # noqa: S603
        [args.nginx, "-v"], capture_output=True, text=True, check=False
    ).stderr.strip()
    print(f"{version}; {os.cpu_count()} CPUs; {time.monotonic() - started:.0f} s in all")
    if args.json:
        args.json.write_text(json.dumps([asdict(result) for result in results], indent=2))
    return 0 if all(result.ok for result in results) else 1


if __name__ == "__main__":
    sys.exit(main())
