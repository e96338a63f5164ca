"""The slowest legitimate uploads (within every default limit), measured; not a test.

    python bench/decode_bound.py            # a few minutes; a Markdown table on stdout

How long one upload holds a decode thread: the uploads are the slowest within every default limit
(at most ``SIMSCORE_MAX_UPLOAD_BYTES`` and ``SIMSCORE_MAX_PIXELS``, within the JPEG scan budget;
JPEGs as detailed as the upload cap allows). For each: one ``prepare_reference`` in a fresh
process (median of 3 after a first decode; wall and CPU seconds), the memory that first decode
added to the process, and the server's ``decode_ms`` for a ``/compare`` with it as the reference
and a 224 px candidate. The server is the one of ``bench/attacks.py`` (``bench/server_probe.py``).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from app.imaging import prepare_reference
from bench.common import machine, table
from bench.server_probe import DEFAULTS, Probe, answer_of, control_pair, post, serving
from tests.support import attacks
from tests.support.images import encode

WIDTH, HEIGHT = 8000, 5000  # 40,000,000 px: SIMSCORE_MAX_PIXELS
HEADERS = (
    "legitimate upload",
    "bytes",
    "decode (one thread)",
    "its CPU",
    "peak MiB",
    "server decode_ms (+ a 224 px candidate)",
)


def largest_under_cap(build: Callable[[float], bytes], noises: Sequence[float]) -> bytes:
    """The first of ``build(noise)`` (most detailed first) that fits SIMSCORE_MAX_UPLOAD_BYTES."""
    for noise in noises:
        data = build(noise)
        if len(data) <= DEFAULTS.max_upload_bytes:
            return data
    raise ValueError("no variant fits the upload cap")


def png_at_pixel_cap() -> bytes:
    """A photograph as an 8000x5000 PNG: as many pixels as SIMSCORE_MAX_PIXELS allows."""
    return encode(attacks.large_photo(WIDTH, HEIGHT), "PNG")


def legitimate_files() -> dict[str, bytes]:
    """The slowest uploads within every default limit: at most SIMSCORE_MAX_UPLOAD_BYTES and
    SIMSCORE_MAX_PIXELS, within the JPEG scan budget; JPEGs as detailed as the cap allows."""
    from app.imaging.screens.jpeg import MAX_JPEG_SCAN_PIXELS, MAX_JPEG_SCANS, jpeg_structure

    allowed = min(MAX_JPEG_SCANS, MAX_JPEG_SCAN_PIXELS // (WIDTH * HEIGHT))
    side = int((MAX_JPEG_SCAN_PIXELS / MAX_JPEG_SCANS) ** 0.5)

    def baseline(noise: float) -> bytes:
        return encode(attacks.detailed_photo(WIDTH, HEIGHT, noise), "JPEG", quality=95)

    def at_scan_budget(w: int, h: int, scans: int) -> Callable[[float], bytes]:
        def build(noise: float) -> bytes:
            image = attacks.detailed_photo(w, h, noise)
            data = encode(image, "JPEG", quality=90, progressive=True)
            return attacks.with_repeated_last_scan(data, scans - jpeg_structure(data).scans)

        return build

    return {
        "JPEG 8000x5000, baseline": largest_under_cap(baseline, (8, 5, 2)),
        f"JPEG 8000x5000, progressive, {allowed} scans": largest_under_cap(
            at_scan_budget(WIDTH, HEIGHT, allowed), (8, 5, 2, 0)
        ),
        f"JPEG {side}x{side}, progressive, {MAX_JPEG_SCANS} scans": largest_under_cap(
            at_scan_budget(side, side, MAX_JPEG_SCANS), (8, 5, 2, 0)
        ),
        "PNG 8000x5000": png_at_pixel_cap(),
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


def decode_bound(
    url: str, candidate: bytes, files: dict[str, bytes], folder: Path
) -> list[list[str]]:
    """One row per file: decoded alone in a child process (its file written to ``folder``),
    then sent to the server at ``url`` as the reference of a ``/compare`` with ``candidate``."""
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
        parts = attacks.pair_parts(data, candidate, metrics="mse")
        response = post(url, "/compare", parts)
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--decode-one", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.decode_one:
        decode_one(args.decode_one)
        return
    print("preparing the legitimate large files ...", file=sys.stderr, flush=True)
    files = legitimate_files()
    started = datetime.datetime.now(datetime.timezone.utc)
    with serving("simscore-decode-bound-") as server:
        _, candidate = control_pair()
        rows = decode_bound(server.url, candidate, files, server.log_path.parent)
    print(f"simscore legitimate uploads, {started:%Y-%m-%d %H:%M} UTC, {machine()}\n")
    print(table(HEADERS, rows))
    print(f"\nserver log: {server.log_path}")


if __name__ == "__main__":
    main()
