"""Control groups, v1 and v2: create one group per sandbox, read its usage, kill every process in it.

Blocking file I/O: call from a worker thread. ``root`` lets tests point at a fake ``/`` (a temp dir).
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path

__all__ = ["Cgroup", "CgroupStats", "CgroupV1", "CgroupV2", "CgroupVersion", "detect_cgroups"]

_KILL_DEADLINE = 5.0


@dataclass(frozen=True, kw_only=True)
class CgroupStats:
    peak_memory: int
    cpu_time: float
    oom_kills: int
    pids_max_hits: int


class Cgroup(ABC):
    """One group. The launcher joins it by writing ``0`` (itself) to each of ``join_files``."""

    name: str
    procs_files: tuple[Path, ...]
    join_files: tuple[Path, ...]

    @abstractmethod
    def stats(self) -> CgroupStats: ...

    @abstractmethod
    def reset_peak(self) -> None: ...

    @abstractmethod
    def pids(self) -> list[int]: ...

    @abstractmethod
    def kill_all(self) -> None: ...

    @abstractmethod
    def remove(self) -> None: ...

    def _kill_loop(self, freeze: Path | None, freeze_value: tuple[str, str]) -> None:
        # A fork bomb can create processes while we kill: freeze first (when we can) so the set is fixed,
        # send SIGKILL to all of it, thaw so the kills are delivered, and repeat until the group is empty.
        deadline = time.monotonic() + _KILL_DEADLINE
        while True:
            pids = self.pids()
            if not pids:
                return
            if time.monotonic() > deadline:
                raise OSError(f"cgroup {self.name}: processes survive SIGKILL: {pids[:10]}")
            if freeze is not None:
                _write(freeze, freeze_value[0])
            for pid in self.pids():
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            if freeze is not None:
                _write(freeze, freeze_value[1])
            time.sleep(0.002)


class CgroupVersion(ABC):
    """A host's cgroup setup; ``create`` makes one limited group."""

    version: int
    base: Path

    @abstractmethod
    def create(self, name: str, *, memory: int, cpus: float, pids: int) -> Cgroup: ...

    @abstractmethod
    def describe(self) -> str: ...

    @abstractmethod
    def limits(self) -> tuple[str, ...]:
        """Which of memory, cpu and pids this setup can limit."""

    @abstractmethod
    def groups(self) -> list[Path]:
        """The sandbox groups that exist now (for leak checks and clean-up after a crash)."""

    def sweep(self, older_than: float = 300.0) -> list[Path]:
        """Remove groups a crashed host left behind: empty and untouched for ``older_than`` seconds.

        A live one-shot group is empty only for the moment before its launcher joins it, and a session's
        group always holds its helper, so neither is ever both empty and old.
        """
        removed = []
        now = time.time()
        for path in self.groups():
            try:
                procs = _read(path / "cgroup.procs") if (path / "cgroup.procs").exists() else ""
                if procs.strip() or now - path.stat().st_mtime < older_than:
                    continue
                path.rmdir()
            except OSError:
                continue
            removed.append(path)
        return removed


def _read(path: Path) -> str:
    return path.read_text()


def _write(path: Path, value: str) -> None:
    with open(path, "w") as handle:
        handle.write(value)


def _read_int(path: Path, default: int = 0) -> int:
    try:
        return int(_read(path).split()[0])
    except (OSError, ValueError, IndexError):
        return default


def _keyed(path: Path, key: str) -> int:
    try:
        for line in _read(path).splitlines():
            parts = line.split()
            if len(parts) == 2 and parts[0] == key:
                return int(parts[1])
    except OSError:
        return 0
    return 0


def _procs(files: tuple[Path, ...]) -> list[int]:
    seen: set[int] = set()
    for path in files:
        with contextlib.suppress(FileNotFoundError):
            seen.update(int(line) for line in _read(path).split())
    return sorted(seen)


class CgroupV1Group(Cgroup):
    def __init__(self, name: str, dirs: dict[str, Path]) -> None:
        self.name = name
        self.dirs = dirs
        self.procs_files = tuple(sorted({d / "cgroup.procs" for d in dirs.values()}))
        # v1 moves one thread through "tasks" without the global threadgroup lock that a write to
        # cgroup.procs takes (an RCU grace period, 6-15 ms here); the launcher is single-threaded, so
        # moving its one thread moves the process.
        self.join_files = tuple(sorted({d / "tasks" for d in dirs.values()}))

    def stats(self) -> CgroupStats:
        memory = self.dirs.get("memory")
        cpuacct = self.dirs.get("cpuacct")
        pids = self.dirs.get("pids")
        return CgroupStats(
            peak_memory=_read_int(memory / "memory.max_usage_in_bytes") if memory else 0,
            cpu_time=_read_int(cpuacct / "cpuacct.usage") / 1e9 if cpuacct else 0.0,
            oom_kills=_keyed(memory / "memory.oom_control", "oom_kill") if memory else 0,
            pids_max_hits=_keyed(pids / "pids.events", "max") if pids else 0,
        )

    def reset_peak(self) -> None:
        if "memory" in self.dirs:
            _write(self.dirs["memory"] / "memory.max_usage_in_bytes", "0")

    def pids(self) -> list[int]:
        return _procs(self.procs_files)

    def kill_all(self) -> None:
        freezer = self.dirs.get("freezer")
        self._kill_loop(freezer / "freezer.state" if freezer else None, ("FROZEN", "THAWED"))

    def remove(self) -> None:
        self.kill_all()
        for directory in sorted(set(self.dirs.values()), reverse=True):
            with contextlib.suppress(FileNotFoundError):
                _rmdir_retry(directory)


class CgroupV1(CgroupVersion):
    version = 1
    CONTROLLERS = ("memory", "pids", "cpu", "cpuacct", "freezer")

    def __init__(self, mounts: dict[str, Path], own: dict[str, str]) -> None:
        self.mounts = mounts
        self.own = own
        self.base = mounts["memory"]

    def describe(self) -> str:
        return "cgroup v1 (" + ", ".join(sorted(self.mounts)) + ")"

    def limits(self) -> tuple[str, ...]:
        return tuple(name for name in ("memory", "cpu", "pids") if name in self.mounts)

    def _parent(self, controller: str) -> Path:
        return self.mounts[controller] / self.own.get(controller, "/").lstrip("/") / "shopfloor"

    def groups(self) -> list[Path]:
        return sorted(
            path for controller in self.mounts for path in self._parent(controller).glob("*") if path.is_dir()
        )

    def create(self, name: str, *, memory: int, cpus: float, pids: int) -> Cgroup:
        dirs: dict[str, Path] = {}
        for controller in self.mounts:
            # Nest below our own group so the host's limits on us also bound the sandbox.
            directory = self._parent(controller) / name
            directory.mkdir(parents=True, exist_ok=True)
            dirs[controller] = directory
        group = CgroupV1Group(name, dirs)
        try:
            if "memory" in dirs:
                _write(dirs["memory"] / "memory.limit_in_bytes", str(memory))
                # Without swap accounting the file is absent; then swap cannot be used to exceed the limit
                # only if the host has no swap, which doctor reports.
                with contextlib.suppress(FileNotFoundError, PermissionError, OSError):
                    _write(dirs["memory"] / "memory.memsw.limit_in_bytes", str(memory))
            if "pids" in dirs:
                _write(dirs["pids"] / "pids.max", str(pids))
            if "cpu" in dirs:
                period = _read_int(dirs["cpu"] / "cpu.cfs_period_us", 100_000)
                _write(dirs["cpu"] / "cpu.cfs_quota_us", str(max(1000, int(cpus * period))))
        except OSError:
            group.remove()
            raise
        return group


class CgroupV2Group(Cgroup):
    def __init__(self, name: str, directory: Path) -> None:
        self.name = name
        self.directory = directory
        self.procs_files = (directory / "cgroup.procs",)
        self.join_files = self.procs_files

    def stats(self) -> CgroupStats:
        d = self.directory
        return CgroupStats(
            peak_memory=_read_int(d / "memory.peak"),
            cpu_time=_keyed(d / "cpu.stat", "usage_usec") / 1e6,
            oom_kills=_keyed(d / "memory.events", "oom_kill"),
            pids_max_hits=_keyed(d / "pids.events", "max"),
        )

    def reset_peak(self) -> None:
        # Writing to memory.peak resets it since Linux 6.12; older kernels keep the group-wide peak.
        with contextlib.suppress(OSError):
            _write(self.directory / "memory.peak", "0")

    def pids(self) -> list[int]:
        return _procs(self.procs_files)

    def kill_all(self) -> None:
        kill = self.directory / "cgroup.kill"
        if kill.exists():
            _write(kill, "1")
        self._kill_loop(self.directory / "cgroup.freeze", ("1", "0"))

    def remove(self) -> None:
        self.kill_all()
        with contextlib.suppress(FileNotFoundError):
            _rmdir_retry(self.directory)


class CgroupV2(CgroupVersion):
    version = 2
    NEEDED = ("memory", "pids", "cpu")

    def __init__(self, mount: Path, own: str) -> None:
        self.mount = mount
        self.own = own
        self.base = self._parent()

    def describe(self) -> str:
        return f"cgroup v2 at {self.base}"

    def limits(self) -> tuple[str, ...]:
        return ("memory", "cpu", "pids")  # detect_cgroups takes v2 only with all of NEEDED

    def groups(self) -> list[Path]:
        return sorted(path for path in self.base.glob("*") if path.is_dir())

    def _parent(self) -> Path:
        # The no-internal-process rule forbids enabling controllers below a group that holds processes
        # (ours does, unless it is the root), so try our own group first, then its parent.
        own = self.mount / self.own.lstrip("/")
        enable = " ".join(f"+{c}" for c in self.NEEDED)
        problems = []
        for parent in dict.fromkeys([own, own.parent if own != self.mount else own]):
            try:
                available = set(_read(parent / "cgroup.controllers").split())
                if not set(self.NEEDED) <= available:
                    problems.append(f"{parent}: controllers {sorted(available)}")
                    continue
                _write(parent / "cgroup.subtree_control", enable)
                group = parent / "shopfloor"
                group.mkdir(exist_ok=True)
                _write(group / "cgroup.subtree_control", enable)
            except OSError as exc:
                problems.append(f"{parent}: {exc}")
                continue
            return group
        raise OSError("no cgroup v2 group with memory, pids and cpu delegated to us: " + "; ".join(problems))

    def create(self, name: str, *, memory: int, cpus: float, pids: int) -> Cgroup:
        directory = self.base / name
        directory.mkdir(exist_ok=True)
        group = CgroupV2Group(name, directory)
        try:
            _write(directory / "memory.max", str(memory))
            with contextlib.suppress(FileNotFoundError):
                _write(directory / "memory.swap.max", "0")
            _write(directory / "pids.max", str(pids))
            _write(directory / "cpu.max", f"{max(1000, int(cpus * 100_000))} 100000")
        except OSError:
            group.remove()
            raise
        return group


def _rmdir_retry(directory: Path) -> None:
    # rmdir fails with EBUSY for a moment after the last process died while the kernel finishes its exit.
    for _ in range(200):
        try:
            directory.rmdir()
            return
        except OSError as exc:
            if exc.errno != 16:
                raise
            time.sleep(0.005)
    directory.rmdir()


def detect_cgroups(root: Path = Path("/")) -> CgroupVersion | None:
    """The usable cgroup setup of this host, or None. Prefers v2 when it has the controllers."""
    try:
        mountinfo = _read(root / "proc/self/mountinfo")
        self_cgroup = _read(root / "proc/self/cgroup")
    except OSError:
        return None
    own_v1: dict[str, str] = {}
    own_v2 = "/"
    for line in self_cgroup.splitlines():
        _, controllers, path = line.split(":", 2)
        if controllers == "":
            own_v2 = path
        for controller in controllers.split(","):
            own_v1[controller] = path
    v1: dict[str, Path] = {}
    v2_mount: Path | None = None
    for line in mountinfo.splitlines():
        left, _, right = line.partition(" - ")
        fields, rfields = left.split(), right.split()
        if len(fields) < 5 or len(rfields) < 3:
            continue
        mount_point = root / fields[4].lstrip("/")
        if rfields[0] == "cgroup2":
            v2_mount = mount_point
        elif rfields[0] == "cgroup":
            for option in rfields[2].split(","):
                if option in CgroupV1.CONTROLLERS:
                    v1[option] = mount_point
    if v2_mount is not None and (v2_mount / "cgroup.controllers").exists():
        available = set(_read(v2_mount / "cgroup.controllers").split())
        if set(CgroupV2.NEEDED) <= available:
            try:
                return CgroupV2(v2_mount, own_v2)
            except OSError:
                pass
    if {"memory", "pids"} <= set(v1) and os.access(v1["memory"], os.W_OK):
        return CgroupV1(v1, own_v1)
    return None
