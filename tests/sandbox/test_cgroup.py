"""cgroup v2 on a fake /sys/fs/cgroup (this machine is v1), and v1 for real."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from shopfloor.sandbox._cgroup import CgroupV1, CgroupV2, CgroupV2Group, detect_cgroups
from shopfloor.sandbox._host import host_cgroups

V2_MOUNTINFO = "30 23 0:26 / /sys/fs/cgroup rw,nosuid - cgroup2 cgroup2 rw,nsdelegate\n"
V1_MOUNTINFO = (
    "30 23 0:26 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory\n"
    "31 23 0:27 / /sys/fs/cgroup/pids rw - cgroup cgroup rw,pids\n"
    "32 23 0:28 / /sys/fs/cgroup/cpu,cpuacct rw - cgroup cgroup rw,cpu,cpuacct\n"
)


def _fake_v2(root: Path, own: str = "/service.slice/app.service") -> Path:
    (root / "proc/self").mkdir(parents=True)
    (root / "proc/self/mountinfo").write_text(V2_MOUNTINFO)
    (root / "proc/self/cgroup").write_text(f"0::{own}\n")
    mount = root / "sys/fs/cgroup"
    for directory in [mount, mount / own.lstrip("/"), (mount / own.lstrip("/")).parent]:
        directory.mkdir(parents=True, exist_ok=True)
        (directory / "cgroup.controllers").write_text("cpuset cpu io memory pids\n")
        (directory / "cgroup.subtree_control").write_text("")
    return mount


def test_detects_v2_and_nests_under_own_group(tmp_path: Path) -> None:
    mount = _fake_v2(tmp_path)
    cgroups = detect_cgroups(tmp_path)
    assert isinstance(cgroups, CgroupV2)
    own = mount / "service.slice/app.service"
    assert cgroups.base == own / "shopfloor"
    assert (own / "cgroup.subtree_control").read_text() == "+memory +pids +cpu"


def test_v2_falls_back_to_parent_when_own_group_refuses(tmp_path: Path) -> None:
    mount = _fake_v2(tmp_path)
    own = mount / "service.slice/app.service"
    # A real kernel answers EBUSY here (our group holds processes); a directory instead of the file fails too.
    (own / "cgroup.subtree_control").unlink()
    (own / "cgroup.subtree_control").mkdir()
    cgroups = detect_cgroups(tmp_path)
    assert isinstance(cgroups, CgroupV2)
    assert cgroups.base == mount / "service.slice/shopfloor"


def test_v2_group_limits_stats_and_kill(tmp_path: Path) -> None:
    _fake_v2(tmp_path)
    cgroups = detect_cgroups(tmp_path)
    assert cgroups is not None
    group = cgroups.create("t1", memory=256 << 20, cpus=0.5, pids=32)
    assert isinstance(group, CgroupV2Group)
    d = group.directory
    assert (d / "memory.max").read_text() == str(256 << 20)
    assert (d / "memory.swap.max").read_text() == "0"
    assert (d / "pids.max").read_text() == "32"
    assert (d / "cpu.max").read_text() == "50000 100000"
    assert group.procs_files == group.join_files == (d / "cgroup.procs",)
    assert cgroups.groups() == [d]
    (d / "memory.peak").write_text("1234\n")
    (d / "cpu.stat").write_text("usage_usec 2500000\nuser_usec 2000000\n")
    (d / "memory.events").write_text("low 0\nhigh 0\nmax 3\noom 1\noom_kill 1\n")
    (d / "pids.events").write_text("max 2\n")
    stats = group.stats()
    assert (stats.peak_memory, stats.cpu_time, stats.oom_kills, stats.pids_max_hits) == (1234, 2.5, 1, 2)
    (d / "cgroup.procs").write_text("")
    (d / "cgroup.kill").write_text("")
    (d / "cgroup.freeze").write_text("0")
    group.kill_all()
    assert (d / "cgroup.kill").read_text() == "1"


def test_v2_without_controllers_is_not_used(tmp_path: Path) -> None:
    mount = _fake_v2(tmp_path)
    (mount / "cgroup.controllers").write_text("cpuset io\n")
    assert detect_cgroups(tmp_path) is None


def test_v1_detection_from_mountinfo(tmp_path: Path) -> None:
    (tmp_path / "proc/self").mkdir(parents=True)
    (tmp_path / "proc/self/mountinfo").write_text(V1_MOUNTINFO)
    (tmp_path / "proc/self/cgroup").write_text("4:memory:/job\n3:pids:/\n2:cpu,cpuacct:/\n0::/\n")
    for name in ("memory", "pids", "cpu,cpuacct"):
        (tmp_path / "sys/fs/cgroup" / name).mkdir(parents=True)
    cgroups = detect_cgroups(tmp_path)
    assert isinstance(cgroups, CgroupV1)
    assert set(cgroups.mounts) == {"memory", "pids", "cpu", "cpuacct"}
    group = cgroups.create("g", memory=64 << 20, cpus=1.0, pids=8)
    memory_dir = tmp_path / "sys/fs/cgroup/memory/job/shopfloor/g"
    assert (memory_dir / "memory.limit_in_bytes").read_text() == str(64 << 20)
    assert memory_dir in cgroups.groups()
    assert group.stats().oom_kills == 0


@pytest.mark.skipif(host_cgroups() is None, reason="no writable cgroup on this host")
async def test_real_group_kills_every_process() -> None:
    cgroups = host_cgroups()
    assert cgroups is not None
    group = await asyncio.to_thread(cgroups.create, "test-kill", memory=64 << 20, cpus=1.0, pids=16)
    try:
        # A process that ignores SIGTERM and forks a child that does too.
        code = (
            "import os,signal,sys,time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
            "sys.stdin.readline(); os.fork(); time.sleep(60)"
        )
        process = await asyncio.create_subprocess_exec(sys.executable, "-c", code, stdin=subprocess.PIPE)
        for path in group.procs_files:
            path.write_text(str(process.pid))
        assert process.stdin is not None
        process.stdin.write(b"go\n")
        process.stdin.close()
        for _ in range(100):
            if len(group.pids()) >= 2:
                break
            await asyncio.sleep(0.02)
        assert len(group.pids()) == 2
        await asyncio.to_thread(group.kill_all)
        assert group.pids() == []
        assert await asyncio.wait_for(process.wait(), 5) == -9
        assert group.procs_files[0].parent in cgroups.groups()
    finally:
        await asyncio.to_thread(group.remove)
    assert not any(path.parent.exists() for path in group.procs_files)
    assert not any(path.name == "test-kill" for path in cgroups.groups())


def test_sweep_removes_only_old_empty_groups(tmp_path: Path) -> None:
    _fake_v2(tmp_path)
    cgroups = detect_cgroups(tmp_path)
    assert cgroups is not None
    groups = {name: cgroups.base / name for name in ("old-empty", "old-busy", "fresh-empty")}
    for directory in groups.values():
        directory.mkdir()
    # cgroupfs shows its files in every group yet rmdir works; a plain directory must be empty instead.
    (groups["old-busy"] / "cgroup.procs").write_text("123\n")
    old = time.time() - 3600
    for name in ("old-empty", "old-busy"):
        os.utime(groups[name], (old, old))
    assert cgroups.sweep(older_than=60) == [groups["old-empty"]]
    assert not groups["old-empty"].exists()
    assert groups["old-busy"].exists() and groups["fresh-empty"].exists()
