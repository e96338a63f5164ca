"""Decode time bounded by construction, measured: per format, the slowest files screening admits
at the upload cap and the pixel limits (``bench/admitted.py``); not a test.

    python bench/decode_bound.py               # about 10 minutes; a Markdown table on stdout
    python bench/decode_bound.py --no-server   # without the server column

For each file: the time screening took (``app.imaging.formats.screen``), then one
``prepare_reference`` in a fresh process (median of 3 after a first decode; its CPU seconds and
wall seconds, and the memory the first decode added to the process), how it ended (decoded, or
the refusal that came after screening, from the header), and the server's ``decode_ms`` for a
``/compare`` with it as the reference and a 224 px candidate (the server of
``bench/attacks.py``: ``bench/server_probe.py``). The target: at most 1 s of CPU per upload on
the benchmark machine, so a decode left running by a request answered 504 or abandoned ends
within about a second, and shutdown within its grace.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from app.errors import SimscoreError
from app.imaging import prepare_reference
from app.imaging.formats import screen
from bench.admitted import DEFAULTS, admitted_files
from bench.common import machine, table
from bench.server_probe import Probe, answer_of, control_pair, post, serving
from devtools import attacks

TARGET_CPU_S = 1.0
HEADERS = (
    "admitted upload",
    "bytes",
    "screening",
    "decode CPU",
    "decode wall",
    "peak MiB",
    "outcome",
    "server decode_ms (+ a 224 px candidate)",
)


def decode_one(path: Path) -> None:
    """(Child process) One upload decoded as a reference: the memory its first decode adds in
    this fresh process (``Probe``), then the median of 3 timed decodes, as JSON."""
    data = path.read_bytes()

    def decode() -> tuple[float, float, str]:
        cpu, wall = time.process_time(), time.perf_counter()
        try:
            prepare_reference(data, max_pixels=DEFAULTS.max_pixels, max_side=DEFAULTS.max_side)
            outcome = "decoded"
        except SimscoreError as exc:
            outcome = f"refused: {type(exc).__name__}"
        return time.process_time() - cpu, time.perf_counter() - wall, outcome

    probe = Probe(os.getpid())
    with probe.watch():
        decode()
    runs = [decode() for _ in range(3)]
    print(
        json.dumps(
            {
                "cpu_s": statistics.median(r[0] for r in runs),
                "wall_s": statistics.median(r[1] for r in runs),
                "peak_mib": probe.peak_mib,
                "outcome": runs[-1][2],
            }
        )
    )


def measure(name: str, data: bytes, folder: Path, url: str | None, candidate: bytes) -> list[str]:
    started = time.perf_counter()
    screen(data, "reference image")
    screening_ms = (time.perf_counter() - started) * 1000
    path = folder / "upload"
    path.write_bytes(data)
    out = subprocess.run(
        [sys.executable, __file__, "--decode-one", str(path)],
        capture_output=True,
        text=True,
        check=True,
        timeout=600,
    ).stdout
    alone = json.loads(out.strip().splitlines()[-1])
    served = "-"
    if url is not None:
        response = post(url, "/compare", attacks.pair_parts(data, candidate, metrics="mse"))
        served = (
            f"{response.json()['timing_ms']['decode_ms'] / 1000:.2f} s"
            if response.status_code == 200
            else answer_of(response)
        )
    over = " (over)" if alone["cpu_s"] > TARGET_CPU_S else ""
    return [
        name,
        f"{len(data):,}",
        f"{screening_ms:.1f} ms",
        f"{alone['cpu_s']:.2f} s{over}",
        f"{alone['wall_s']:.2f} s",
        f"{alone['peak_mib']:.0f}",
        alone["outcome"],
        served,
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--decode-one", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--no-server", action="store_true", help="leave out the server column")
    args = parser.parse_args()
    if args.decode_one:
        decode_one(args.decode_one)
        return
    print("building the slowest admitted files (a few minutes) ...", file=sys.stderr, flush=True)
    files = admitted_files()
    started = datetime.datetime.now(datetime.timezone.utc)
    load_before = os.getloadavg()[0]
    rows = []
    with tempfile.TemporaryDirectory(prefix="simscore-decode-bound-") as tmp:
        folder = Path(tmp)
        _, candidate = control_pair()
        if args.no_server:
            for name, data in files.items():
                rows.append(measure(name, data, folder, None, candidate))
                print(" | ".join(rows[-1]), file=sys.stderr, flush=True)
        else:
            with serving("simscore-decode-bound-") as server:
                for name, data in files.items():
                    rows.append(measure(name, data, folder, server.url, candidate))
                    print(" | ".join(rows[-1]), file=sys.stderr, flush=True)
    print(f"simscore decode bound, {started:%Y-%m-%d %H:%M} UTC, {machine()}")
    print(f"load average {load_before:.2f} before, {os.getloadavg()[0]:.2f} after\n")
    print(table(HEADERS, rows))
    worst = max(rows, key=lambda row: float(row[3].split()[0]))
    print(f"\nslowest: {worst[0]}, {worst[3]} of CPU (target {TARGET_CPU_S:g} s)")


if __name__ == "__main__":
    main()
