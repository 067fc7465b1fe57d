"""Checks of the kernel and tools that sandboxes are built from.

Each probe tries the feature rather than trusting a version number: a kernel can
have user namespaces compiled in and switched off, a cgroup controller can be
mounted read-only, Landlock can be built in and left out of the boot's LSM list.
"""

from __future__ import annotations

import ctypes
import errno
import importlib.metadata
import os
import shutil
import subprocess
from pathlib import Path

from shopfloor.config import Settings
from shopfloor.diagnostics._checks import CheckResult

__all__ = [
    "cgroup_controllers",
    "check_bubblewrap",
    "check_cgroups",
    "check_landlock",
    "check_seccomp",
    "check_userns",
    "landlock_abi",
]

_LIMIT_CONTROLLERS = ("memory", "cpu", "pids")
_V1_CONTROLLERS = frozenset(
    [
        "cpuset",
        "cpu",
        "cpuacct",
        "blkio",
        "memory",
        "devices",
        "freezer",
        "net_cls",
        "perf_event",
        "net_prio",
        "hugetlb",
        "pids",
        "rdma",
        "misc",
    ]
)
# landlock_create_ruleset has the same number on every architecture (unified syscall table).
_SYS_LANDLOCK_CREATE_RULESET = 444
_LANDLOCK_CREATE_RULESET_VERSION = 1


def _run(command: list[str], timeout: float = 5.0) -> tuple[int, str]:
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return -1, str(exc)
    return done.returncode, (done.stdout + done.stderr).strip()


def _read(path: str) -> str | None:
    try:
        return Path(path).read_text().strip()
    except OSError:
        return None


def check_bubblewrap(settings: Settings) -> CheckResult:
    if shutil.which("bwrap") is None:
        return CheckResult(
            name="bubblewrap", status="missing", detail="bwrap not found", fix="apt-get install bubblewrap"
        )
    _, version = _run(["bwrap", "--version"])
    code, output = _run(["bwrap", "--ro-bind", "/", "/", "--unshare-all", "--die-with-parent", "true"])
    data = {"version": version, "works": code == 0}
    if code != 0:
        return CheckResult(
            name="bubblewrap",
            status="warn",
            detail=f"{version} installed, but cannot create a sandbox: {output[:120]}",
            fix="enable user namespaces (see 'user namespaces') or run as root",
            data=data,
        )
    return CheckResult(name="bubblewrap", status="ok", detail=f"{version}, creates sandboxes", data=data)


def check_userns(settings: Settings) -> CheckResult:
    max_namespaces = _read("/proc/sys/user/max_user_namespaces")
    # Debian/Ubuntu switches; absent on kernels that always allow unprivileged namespaces.
    unprivileged = _read("/proc/sys/kernel/unprivileged_userns_clone")
    apparmor = _read("/proc/sys/kernel/apparmor_restrict_unprivileged_userns")
    works = shutil.which("unshare") is not None and _run(["unshare", "--user", "true"])[0] == 0
    data = {
        "unshare_works": works,
        "max_user_namespaces": max_namespaces,
        "unprivileged_userns_clone": unprivileged,
        "apparmor_restrict_unprivileged_userns": apparmor,
    }
    sysctl = "sysctl -w user.max_user_namespaces=15000 kernel.unprivileged_userns_clone=1"
    if not works or max_namespaces == "0":
        return CheckResult(
            name="user namespaces",
            status="missing",
            detail=f"cannot create a user namespace (max_user_namespaces={max_namespaces})",
            fix=sysctl,
            data=data,
        )
    if unprivileged == "0" or apparmor == "1":
        return CheckResult(
            name="user namespaces",
            status="warn",
            detail="only root may create user namespaces, so tenants cannot start sandboxes",
            fix="sysctl -w kernel.unprivileged_userns_clone=1 kernel.apparmor_restrict_unprivileged_userns=0",
            data=data,
        )
    return CheckResult(
        name="user namespaces", status="ok", detail=f"available (max {max_namespaces})", data=data
    )


def cgroup_controllers(mounts_text: str | None = None) -> dict[str, dict[str, str]]:
    """Usable controllers per hierarchy: ``{"v1": {name: dir}, "v2": {name: dir}}``.

    A controller is usable when its hierarchy is mounted writable; on v2 it must also be
    listed in the root's ``cgroup.controllers`` (a v2 mount beside v1 usually has none).
    """
    text = mounts_text if mounts_text is not None else (_read("/proc/mounts") or "")
    found: dict[str, dict[str, str]] = {"v1": {}, "v2": {}}
    # /proc/cgroups names the controllers this kernel has; mount options mix them with rw, nosuid...
    listed = {line.split()[0] for line in (_read("/proc/cgroups") or "").splitlines()[1:] if line.strip()}
    known = listed or _V1_CONTROLLERS
    for line in text.splitlines():
        fields = line.split()
        if len(fields) < 4 or fields[2] not in {"cgroup", "cgroup2"}:
            continue
        mount, fstype, options = fields[1], fields[2], fields[3].split(",")
        if "ro" in options or not os.access(mount, os.W_OK):
            continue
        if fstype == "cgroup":
            for name in (opt for opt in options if opt in known):
                found["v1"].setdefault(name, mount)
        else:
            for name in (_read(f"{mount}/cgroup.controllers") or "").split():
                found["v2"].setdefault(name, mount)
    return found


def check_cgroups(settings: Settings) -> CheckResult:
    found = cgroup_controllers()
    usable = set(found["v1"]) | set(found["v2"])

    def summary(version: str) -> str:
        names = [name for name in _LIMIT_CONTROLLERS if name in found[version]]
        return ", ".join(names) if names else "none"

    detail = f"v1: {summary('v1')}; v2: {summary('v2')} (of memory, cpu, pids)"
    data = {version: sorted(found[version]) for version in found}
    missing = [name for name in _LIMIT_CONTROLLERS if name not in usable]
    fix = "run the worker as root or delegate a cgroup (systemd: Delegate=yes) with memory, cpu and pids"
    if len(missing) == len(_LIMIT_CONTROLLERS):
        return CheckResult(name="cgroups", status="missing", detail=detail, fix=fix, data=data)
    if missing:
        return CheckResult(
            name="cgroups",
            status="warn",
            detail=f"{detail}; no {', '.join(missing)} limits",
            fix=fix,
            data=data,
        )
    return CheckResult(name="cgroups", status="ok", detail=detail, data=data)


def check_seccomp(settings: Settings) -> CheckResult:
    actions = _read("/proc/sys/kernel/seccomp/actions_avail")
    status = _read("/proc/self/status") or ""
    mode = next((line.split()[1] for line in status.splitlines() if line.startswith("Seccomp:")), "?")
    try:
        import pyseccomp  # noqa: F401  (loads libseccomp through ctypes)

        binding: str | None = importlib.metadata.version("pyseccomp")
    except (ImportError, OSError, importlib.metadata.PackageNotFoundError):
        binding = None
    data = {"filters": actions is not None, "process_mode": mode, "pyseccomp": binding}
    if actions is None:
        return CheckResult(
            name="seccomp",
            status="missing",
            detail="the kernel has no seccomp filter support",
            fix="use a kernel built with CONFIG_SECCOMP_FILTER",
            data=data,
        )
    if binding is None:
        return CheckResult(
            name="seccomp",
            status="warn",
            detail="kernel filters available, but pyseccomp / libseccomp cannot be loaded",
            fix="apt-get install libseccomp2 && pip install pyseccomp",
            data=data,
        )
    return CheckResult(
        name="seccomp",
        status="ok",
        detail=f"kernel filters, pyseccomp {binding} (this process: mode {mode})",
        data=data,
    )


def landlock_abi() -> tuple[int | None, int]:
    """Landlock's ABI version, or None and the errno saying why it is unavailable."""
    libc = ctypes.CDLL(None, use_errno=True)
    syscall = libc.syscall
    syscall.restype = ctypes.c_long
    syscall.argtypes = [ctypes.c_long, ctypes.c_void_p, ctypes.c_size_t, ctypes.c_uint32]
    abi = int(syscall(_SYS_LANDLOCK_CREATE_RULESET, None, 0, _LANDLOCK_CREATE_RULESET_VERSION))
    if abi < 0:
        return None, ctypes.get_errno()
    return abi, 0


def check_landlock(settings: Settings) -> CheckResult:
    abi, error = landlock_abi()
    if abi is not None:
        return CheckResult(name="landlock", status="ok", detail=f"ABI {abi}", data={"abi": abi})
    if error == errno.EOPNOTSUPP:
        detail, fix = (
            "built into the kernel but disabled at boot",
            "add landlock to the lsm= kernel parameter",
        )
    else:
        detail, fix = (
            f"not available ({errno.errorcode.get(error, error)})",
            "use a kernel >= 5.13 with Landlock",
        )
    return CheckResult(name="landlock", status="missing", detail=detail, fix=fix, data={"abi": None})
