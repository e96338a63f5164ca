"""``python -m app.probe /healthz``: the container's health probe (Docker's ``HEALTHCHECK``,
compose's ``healthcheck``, the Kubernetes liveness probe). Standard library only: it starts in
milliseconds and loads nothing of the service.

Exit 0 when the path answers 200 within ``--timeout-s``, and also when the server answered with
its connection cap's 503 (``SIMSCORE_MAX_CONNECTIONS``, written by the server before it reads a
request): a server that busy is alive and serving, and a probe that called it dead would restart
a healthy process at its busiest. Exit 1 otherwise: no answer in time, a refused connection, or
any other status (a 503 from ``/healthz`` after the GPU failed, ``/readyz`` while loading).
"""

from __future__ import annotations

import argparse
import json
import sys
import urllib.error
import urllib.request
from collections.abc import Sequence

BUSY_MARKER = "(SIMSCORE_MAX_CONNECTIONS)"  # in the detail of the connection cap's 503


def probe(url: str, timeout_s: float) -> tuple[bool, str]:
    """Whether the server at ``url`` counts as up, and what it answered."""
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as response:  # noqa: S310 (our own URL)
            return response.status == 200, f"{response.status}"
    except urllib.error.HTTPError as answer:
        body = answer.read(4096).decode("utf-8", "replace")
        try:
            detail = str(json.loads(body).get("detail", ""))
        except (ValueError, AttributeError):
            detail = body
        busy = answer.code == 503 and BUSY_MARKER in detail
        return busy, f"{answer.code} {detail}"[:300]
    except (OSError, ValueError) as exc:  # refused, reset, timed out, a bad URL
        return False, f"no answer: {exc}"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m app.probe", description=__doc__)
    parser.add_argument("path", help="/healthz or /readyz")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--timeout-s", type=float, default=4.0)
    args = parser.parse_args(argv)
    up, said = probe(f"http://127.0.0.1:{args.port}{args.path}", args.timeout_s)
    print(said)
    return 0 if up else 1


if __name__ == "__main__":
    sys.exit(main())
