"""Environments for child processes (servers, load generators, benchmark sections): this
process's environment with a few variables over it, and ``PYTHONPATH`` only ever extended.

A replaced ``PYTHONPATH`` loses what the parent was given: on a GPU machine, the folder the
service's wheels were installed to (``bench/gpu_wheels.sh``), so the child could not import the
web stack.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from pathlib import Path


def python_path(*first: str | Path, base: Mapping[str, str] | None = None) -> str:
    """``first``, then the entries of ``base``'s ``PYTHONPATH`` (default: this process's),
    without duplicates and empty entries."""
    base = os.environ if base is None else base
    return join_paths([*map(str, first), *base.get("PYTHONPATH", "").split(os.pathsep)])


def join_paths(entries: Iterable[str]) -> str:
    return os.pathsep.join(dict.fromkeys(entry for entry in entries if entry))


def child_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """This process's environment with ``extra`` over it; a ``PYTHONPATH`` in ``extra`` goes in
    front of this process's, never in its place."""
    extra = extra or {}
    env = {**os.environ, **extra}
    if "PYTHONPATH" in extra:
        env["PYTHONPATH"] = python_path(*extra["PYTHONPATH"].split(os.pathsep))
    return env
