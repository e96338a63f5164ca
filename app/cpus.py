"""How many CPUs this process may use: its affinity mask and its cgroup's CPU quota, not the host's
core count (``os.cpu_count()`` sees every core of the node, a container limited to 4 CPUs too).

Torch-free and thread-free, like ``app.allocator``: the command line may read it first.

* Affinity: ``os.sched_getaffinity(0)`` (a cpuset, ``taskset``, ``docker --cpuset-cpus``).
* cgroup v2: ``cpu.max`` (``"<quota> <period>"`` or ``"max <period>"``) of the process's cgroup
  and of every ancestor up to the mount root, the smallest quota winning; Kubernetes' CPU limit and
  ``docker --cpus`` land here.
* cgroup v1: ``cpu.cfs_quota_us`` / ``cpu.cfs_period_us`` (quota ``-1``: no limit) in the ``cpu``
  controller's hierarchy, likewise.

A fractional quota rounds up (1.5 CPUs -> 2 threads): the last thread is throttled part of the
time, and fewer threads would leave part of the quota unused.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Iterable
from pathlib import Path

CGROUP_ROOT = Path("/sys/fs/cgroup")
PROC_SELF_CGROUP = Path("/proc/self/cgroup")
V1_CPU_CONTROLLERS = ("cpu", "cpu,cpuacct", "cpuacct,cpu")


def available_cpus(
    *,
    affinity: Callable[[], Iterable[int]] | None = None,
    cgroup_root: Path = CGROUP_ROOT,
    proc_self_cgroup: Path = PROC_SELF_CGROUP,
) -> int:
    """CPUs this process may keep busy: the affinity mask's size, lowered to the cgroup quota
    (rounded up); at least 1."""
    count = _affinity_count(affinity)
    quota = cgroup_cpu_quota(cgroup_root, proc_self_cgroup)
    if quota is not None:
        count = min(count, max(1, math.ceil(quota)))
    return max(1, count)


def cgroup_cpu_quota(
    cgroup_root: Path = CGROUP_ROOT, proc_self_cgroup: Path = PROC_SELF_CGROUP
) -> float | None:
    """The tightest CPU quota (in CPUs) on this process's cgroup and its ancestors, v2 or v1;
    None without one (or where cgroups cannot be read)."""
    quotas = [
        q
        for directory in _cgroup_dirs(cgroup_root, proc_self_cgroup)
        if (q := _quota_of(directory)) is not None
    ]
    return min(quotas) if quotas else None


def _affinity_count(affinity: Callable[[], Iterable[int]] | None) -> int:
    if affinity is None:
        if not hasattr(os, "sched_getaffinity"):  # not Linux
            return os.cpu_count() or 1
        return len(os.sched_getaffinity(0))
    return len(set(affinity()))


def _cgroup_dirs(root: Path, proc_self_cgroup: Path) -> list[Path]:
    """The process's cgroup directories (v2 unified, v1 cpu controller) and their ancestors,
    as mounted under ``root``; ``root`` itself when the process's path is not found there (a
    container whose cgroup namespace makes its own cgroup the root)."""
    try:
        lines = proc_self_cgroup.read_text().splitlines()
    except OSError:
        lines = []
    dirs: list[Path] = []
    for line in lines:
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        _, controllers, path = parts
        if controllers == "":  # v2: "0::/path"
            dirs += _with_ancestors(root, path)
        elif "cpu" in controllers.split(","):
            for name in V1_CPU_CONTROLLERS:
                if (root / name).is_dir():
                    dirs += _with_ancestors(root / name, path)
    if not dirs:
        dirs = [root, *(root / name for name in V1_CPU_CONTROLLERS)]
    return dirs


def _with_ancestors(mount: Path, path: str) -> list[Path]:
    """``mount/path`` and each parent up to ``mount``; just ``mount`` when ``mount/path`` does
    not exist (the path is the host's view, outside this mount)."""
    leaf = mount / path.strip("/")
    if not leaf.is_dir():
        return [mount]
    dirs = [leaf]
    while leaf != mount:
        leaf = leaf.parent
        dirs.append(leaf)
    return dirs


def _quota_of(directory: Path) -> float | None:
    """The CPU quota set in one cgroup directory, in CPUs (None: none set or unreadable)."""
    try:
        fields = (directory / "cpu.max").read_text().split()
    except OSError:
        fields = []
    if len(fields) == 2:
        return None if fields[0] == "max" else _ratio(fields[0], fields[1])
    try:
        quota = (directory / "cpu.cfs_quota_us").read_text().strip()
        period = (directory / "cpu.cfs_period_us").read_text().strip()
    except OSError:
        return None
    return None if quota.startswith("-") else _ratio(quota, period)


def _ratio(quota: str, period: str) -> float | None:
    try:
        q, p = int(quota), int(period)
    except ValueError:
        return None
    return q / p if q > 0 and p > 0 else None


def sized_to_cpus(explicit: int | None, *, at_most: int | None = None) -> int:
    """``explicit`` when set (an explicit setting always wins), else the CPUs this process may
    use (``available_cpus``), capped at ``at_most``."""
    if explicit is not None:
        return explicit
    cpus = available_cpus()
    return min(cpus, at_most) if at_most is not None else cpus
