"""The glibc allocator setting for CPU scoring (``SIMSCORE_CPU_ALLOCATOR_TUNING``). Torch-free, so
the command line can apply it before anything else starts a thread.

VGG activations are tens to hundreds of MB each. By default glibc serves them with fresh ``mmap``
pages that the kernel zero-fills on first touch and unmaps at ``free``, for every batch. Two
settings make the heap keep and reuse those pages instead:

* ``keep_freed_memory``: no ``mmap`` for large blocks, and the heap's free top returned to the
  system only past 1 GiB (trim threshold). Takes effect at once, for every thread.
* ``single_arena``: one malloc arena for the whole process. glibc gives threads their own arenas
  made of 64 MB sub-heaps, and a block larger than that (relu1_1 of a batch of 16 images at
  224 px is 205 MB) is ``mmap``-ed and unmapped in such an arena whatever the other settings say.
  The model runs on the batching thread, so without this its activations page-fault every batch
  (measured: about 27,000 page faults and 8 % of the server's CPU time per pair at 224 px; see
  docs/benchmarks.md). glibc fixes a thread's arena when the thread first allocates, so this
  must run before other threads exist: ``simscore serve`` and ``simscore compare`` call it
  first thing (unless the device is set to CUDA), and ``tune`` (both settings) follows once the
  model is known to run on the CPU.
"""

from __future__ import annotations

import ctypes
import ctypes.util
from collections.abc import Callable

# glibc mallopt parameters (malloc.h)
_M_TRIM_THRESHOLD = -1
_M_MMAP_MAX = -4
_M_ARENA_MAX = -8


def _mallopt() -> Callable[[int, int], int] | None:
    """glibc's ``mallopt`` from the running process (None where there is none)."""
    for name in (None, ctypes.util.find_library("c")):
        try:
            mallopt: Callable[[int, int], int] = ctypes.CDLL(name).mallopt
        except (OSError, AttributeError):
            continue  # not glibc
        return mallopt
    return None


def keep_freed_memory() -> bool:
    """Large blocks from the heap, kept for reuse (see the module docstring); whether it
    applied."""
    mallopt = _mallopt()
    if mallopt is None:
        return False
    return bool(mallopt(_M_MMAP_MAX, 0) and mallopt(_M_TRIM_THRESHOLD, 2**30))


def single_arena() -> bool:
    """One malloc arena for threads that have not allocated yet; whether it applied."""
    mallopt = _mallopt()
    return mallopt is not None and bool(mallopt(_M_ARENA_MAX, 1))


def tune() -> bool:
    """Both settings; whether both applied (glibc only)."""
    arena = single_arena()
    return keep_freed_memory() and arena
