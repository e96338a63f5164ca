"""``app.allocator``: where a large block allocated on another thread comes from.

Each case runs in a fresh interpreter (glibc fixes a thread's arena when it first allocates, so
the setting must come before any other thread exists, which a test process cannot promise). A
256 MB block, larger than a thread arena's 64 MB sub-heaps, is allocated on a new thread, as the
batching thread allocates VGG activations, and looked up in ``/proc/self/maps``.
"""

from __future__ import annotations

import os
import platform
import subprocess
import sys

import pytest

from devtools.servers import ROOT

pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux") or platform.libc_ver()[0] != "glibc",
    reason="glibc on Linux only",
)

PROBE = """
import ctypes, sys, threading
from app import allocator

setting = sys.argv[1]
if setting == "tune":
    assert allocator.tune()
elif setting == "keep_freed_memory":
    assert allocator.keep_freed_memory()

libc = ctypes.CDLL(None)
libc.malloc.restype = ctypes.c_void_p
libc.malloc.argtypes = [ctypes.c_size_t]
libc.free.argtypes = [ctypes.c_void_p]
found = []

def region(address):
    with open("/proc/self/maps") as maps:
        for line in maps:
            fields = line.split()
            start, end = (int(x, 16) for x in fields[0].split("-"))
            if start <= address < end:
                return fields[5] if len(fields) > 5 else "anonymous mapping"
    return "not mapped"

def on_a_thread():
    block = libc.malloc(256 << 20)
    found.append(region(block))
    libc.free(block)

thread = threading.Thread(target=on_a_thread)
thread.start()
thread.join()
print(found[0])
"""


def block_region(setting: str) -> str:
    # the allocator's own environment knobs (or another allocator preloaded) would decide instead
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("MALLOC_") and k not in ("GLIBC_TUNABLES", "LD_PRELOAD")
    }
    done = subprocess.run(
        [sys.executable, "-c", PROBE, setting],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return done.stdout.strip()


def test_by_default_a_threads_large_block_is_a_fresh_mapping() -> None:
    assert block_region("none") == "anonymous mapping"


def test_keeping_freed_memory_alone_does_not_reach_other_threads() -> None:
    # the fault the single arena fixes: a thread arena maps blocks larger than its sub-heaps
    assert block_region("keep_freed_memory") == "anonymous mapping"


def test_tuned_a_threads_large_block_comes_from_the_reused_heap() -> None:
    assert block_region("tune") == "[heap]"
