"""The CPUs this process may use: affinity and the cgroup quota (v2 and v1), read from fake cgroup
trees and a fake affinity mask; and what is sized from them (torch's threads, inductor's compile
workers, the decode pool), explicit settings winning."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import torch

import app.cpus as cpus
import app.scoring.factory as factory
from app.config import Settings
from app.cpus import available_cpus, cgroup_cpu_quota, sized_to_cpus
from app.pipeline.decode import Decoder
from app.vocabulary import Precision


def sixteen() -> range:
    return range(16)


def write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def v2_tree(tmp_path: Path, *, own: str, parent: str = "max 100000") -> tuple[Path, Path]:
    """A cgroup v2 mount with the process in ``/kubepods/pod1/ctr`` (``own`` its cpu.max,
    ``parent`` the pod's)."""
    root = tmp_path / "cgroup"
    write(root / "cpu.max", "max 100000\n")
    write(root / "kubepods" / "pod1" / "cpu.max", parent + "\n")
    write(root / "kubepods" / "pod1" / "ctr" / "cpu.max", own + "\n")
    proc = tmp_path / "proc-self-cgroup"
    write(proc, "0::/kubepods/pod1/ctr\n")
    return root, proc


def test_a_v2_quota_limits_the_cpus_below_the_affinity(tmp_path: Path) -> None:
    root, proc = v2_tree(tmp_path, own="400000 100000")
    assert cgroup_cpu_quota(root, proc) == 4.0
    assert available_cpus(affinity=sixteen, cgroup_root=root, proc_self_cgroup=proc) == 4


def test_a_fractional_quota_rounds_up_and_never_below_one(tmp_path: Path) -> None:
    root, proc = v2_tree(tmp_path, own="150000 100000")
    assert available_cpus(affinity=sixteen, cgroup_root=root, proc_self_cgroup=proc) == 2
    root, proc = v2_tree(tmp_path, own="10000 100000")
    assert available_cpus(affinity=sixteen, cgroup_root=root, proc_self_cgroup=proc) == 1


def test_an_ancestors_quota_counts_the_tightest_wins(tmp_path: Path) -> None:
    root, proc = v2_tree(tmp_path, own="max 100000", parent="300000 100000")
    assert cgroup_cpu_quota(root, proc) == 3.0
    root, proc = v2_tree(tmp_path, own="200000 100000", parent="600000 100000")
    assert cgroup_cpu_quota(root, proc) == 2.0


def test_no_quota_leaves_the_affinity(tmp_path: Path) -> None:
    root, proc = v2_tree(tmp_path, own="max 100000")
    assert cgroup_cpu_quota(root, proc) is None
    assert available_cpus(affinity=lambda: [0, 2, 5], cgroup_root=root, proc_self_cgroup=proc) == 3


def test_affinity_below_the_quota_wins(tmp_path: Path) -> None:
    root, proc = v2_tree(tmp_path, own="800000 100000")
    assert available_cpus(affinity=lambda: [3, 4], cgroup_root=root, proc_self_cgroup=proc) == 2


def test_a_container_whose_cgroup_is_the_root(tmp_path: Path) -> None:
    """A cgroup namespace (docker's default on v2): /proc/self/cgroup says ``0::/`` and the
    limit is on the mount's root; a host path that is not under the mount falls back to it."""
    root = tmp_path / "cgroup"
    write(root / "cpu.max", "250000 100000\n")
    for line in ("0::/\n", "0::/system.slice/docker-0123.scope\n"):
        write(tmp_path / "proc", line)
        assert cgroup_cpu_quota(root, tmp_path / "proc") == 2.5


def test_v1_cfs_quota(tmp_path: Path) -> None:
    root = tmp_path / "cgroup"
    write(root / "cpu,cpuacct" / "docker" / "abc" / "cpu.cfs_quota_us", "300000\n")
    write(root / "cpu,cpuacct" / "docker" / "abc" / "cpu.cfs_period_us", "100000\n")
    write(root / "cpu,cpuacct" / "cpu.cfs_quota_us", "-1\n")
    write(root / "cpu,cpuacct" / "cpu.cfs_period_us", "100000\n")
    proc = tmp_path / "proc"
    write(proc, "12:memory:/docker/abc\n4:cpu,cpuacct:/docker/abc\n0::/\n")
    assert cgroup_cpu_quota(root, proc) == 3.0
    assert available_cpus(affinity=sixteen, cgroup_root=root, proc_self_cgroup=proc) == 3
    write(root / "cpu,cpuacct" / "docker" / "abc" / "cpu.cfs_quota_us", "-1\n")
    assert cgroup_cpu_quota(root, proc) is None


def test_unreadable_cgroups_mean_no_quota(tmp_path: Path) -> None:
    missing = tmp_path / "nothing"
    assert cgroup_cpu_quota(missing, missing) is None
    assert available_cpus(affinity=sixteen, cgroup_root=missing, proc_self_cgroup=missing) == 16
    root = tmp_path / "cgroup"
    write(root / "cpu.max", "garbage\n")
    assert cgroup_cpu_quota(root, missing) is None


def test_this_process() -> None:
    """Whatever this machine is: at least one CPU, never more than the affinity mask."""
    assert 1 <= available_cpus() <= len(os.sched_getaffinity(0))


# -- what is sized from them -------------------------------------------------------------------


@pytest.fixture
def four_cpus(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """A process limited to 4 CPUs (a Kubernetes limit on a 16-core node); torch's thread
    count restored after."""
    threads = torch.get_num_threads()
    monkeypatch.setattr(cpus, "available_cpus", lambda **_: 4)
    monkeypatch.setattr(factory, "available_cpus", lambda **_: 4)
    monkeypatch.delenv("TORCHINDUCTOR_COMPILE_THREADS", raising=False)
    yield
    torch.set_num_threads(threads)


@pytest.mark.usefixtures("four_cpus")
def test_sized_to_cpus_explicit_wins() -> None:
    assert sized_to_cpus(None) == 4
    assert sized_to_cpus(None, at_most=2) == 2
    assert sized_to_cpus(12, at_most=2) == 12


@pytest.mark.usefixtures("four_cpus")
@pytest.mark.parametrize(
    ("explicit", "precision", "expected"), [(None, "bf16", 4), (3, "bf16", 3), (None, "fp32", 4)]
)
def test_torch_and_compile_threads_follow_the_quota(
    make_settings: Callable[..., Settings],
    monkeypatch: pytest.MonkeyPatch,
    explicit: int | None,
    precision: Precision,
    expected: int,
) -> None:
    import torch._inductor.config as inductor_config

    monkeypatch.setattr(torch, "get_num_threads", lambda: 16)  # torch's default: every core
    threads: list[int] = []
    monkeypatch.setattr(torch, "set_num_threads", threads.append)
    with inductor_config.patch(compile_threads=16):  # inductor's default on 16 cores
        factory.size_threads(make_settings(torch_threads=explicit, precision=precision))
        assert inductor_config.compile_threads == (4 if precision == "bf16" else 16)
    assert threads == [expected]


@pytest.mark.usefixtures("four_cpus")
def test_an_explicit_compile_thread_count_wins(
    make_settings: Callable[..., Settings], monkeypatch: pytest.MonkeyPatch
) -> None:
    import torch._inductor.config as inductor_config

    monkeypatch.setenv("TORCHINDUCTOR_COMPILE_THREADS", "12")
    with inductor_config.patch(compile_threads=12):  # what inductor read from the variable
        factory.size_threads(make_settings(precision="bf16"))
        assert inductor_config.compile_threads == 12


@pytest.mark.parametrize(
    ("explicit", "quota", "expected"), [(None, 2, 2), (None, 16, 4), (8, 2, 8)]
)
def test_the_decode_pool_is_sized_to_the_quota(
    make_settings: Callable[..., Settings],
    monkeypatch: pytest.MonkeyPatch,
    explicit: int | None,
    quota: int,
    expected: int,
) -> None:
    """4 threads by default (each may hold an image's decode peak: docs/security.md), fewer when
    the process may use fewer CPUs; an explicit setting wins."""
    monkeypatch.setattr(cpus, "available_cpus", lambda **_: quota)
    decoder = Decoder(make_settings(decode_threads=explicit))
    try:
        assert len(decoder._pool._threads) == expected
    finally:
        decoder.close()
