"""``shopfloor doctor``'s lines for the kernel features sandboxes are built from.

Each line reports what the sandbox's own probe (``probe_capabilities``) found, the same finding the
backends choose by, so the doctor cannot call a layer usable that the sandbox then refuses, or the
reverse. The sysctl values shown beside a finding are there to explain it.
"""

from __future__ import annotations

import errno
import importlib.metadata
from pathlib import Path

from shopfloor.diagnostics import CheckResult
from shopfloor.sandbox._caps import Capabilities

__all__ = ["bubblewrap_line", "cgroups_line", "landlock_line", "seccomp_line", "userns_line"]

_LIMITS = ("memory", "cpu", "pids")
_USERNS_FIX = (
    "sysctl -w user.max_user_namespaces=15000 kernel.unprivileged_userns_clone=1 "
    "kernel.apparmor_restrict_unprivileged_userns=0"
)


def _read(path: str) -> str | None:
    try:
        return Path(path).read_text().strip()
    except OSError:
        return None


def bubblewrap_line(caps: Capabilities) -> CheckResult:
    if caps.bwrap is None:
        return CheckResult(
            name="bubblewrap", status="missing", detail="bwrap not found", fix="apt-get install bubblewrap"
        )
    data = {"version": caps.bwrap_version, "path": caps.bwrap, "works": caps.userns is None}
    if caps.userns is not None:
        return CheckResult(
            name="bubblewrap",
            status="warn",
            detail=f"{caps.bwrap_version} installed, but cannot create a sandbox: {caps.userns[:160]}",
            fix="enable unprivileged user namespaces (see 'user namespaces')",
            data=data,
        )
    return CheckResult(
        name="bubblewrap", status="ok", detail=f"{caps.bwrap_version}, creates sandboxes", data=data
    )


def userns_line(caps: Capabilities) -> CheckResult:
    max_namespaces = _read("/proc/sys/user/max_user_namespaces")
    data = {
        "works": caps.userns is None,
        "tried_with_bwrap": caps.bwrap is not None,
        "max_user_namespaces": max_namespaces,
        "unprivileged_userns_clone": _read("/proc/sys/kernel/unprivileged_userns_clone"),
        "apparmor_restrict_unprivileged_userns": _read(
            "/proc/sys/kernel/apparmor_restrict_unprivileged_userns"
        ),
    }
    if caps.userns is not None:
        return CheckResult(
            name="user namespaces", status="missing", detail=caps.userns, fix=_USERNS_FIX, data=data
        )
    how = "an unprivileged uid creates them" if caps.bwrap else "allowed by sysctl (not tried: no bwrap)"
    return CheckResult(
        name="user namespaces", status="ok", detail=f"available (max {max_namespaces}): {how}", data=data
    )


def cgroups_line(caps: Capabilities) -> CheckResult:
    data = {"cgroup": caps.cgroup, "limits": list(caps.cgroup_limits)}
    fix = "run the worker as root or delegate a cgroup (systemd: Delegate=yes) with memory, cpu and pids"
    if caps.cgroup is None:
        return CheckResult(
            name="cgroups",
            status="missing",
            detail="no writable cgroup with the memory and pids controllers",
            fix=fix,
            data=data,
        )
    missing = [name for name in _LIMITS if name not in caps.cgroup_limits]
    if missing:
        return CheckResult(
            name="cgroups",
            status="warn",
            detail=f"{caps.cgroup}; no {', '.join(missing)} limits",
            fix=fix,
            data=data,
        )
    return CheckResult(name="cgroups", status="ok", detail=f"{caps.cgroup}: memory, cpu, pids", data=data)


def seccomp_line(caps: Capabilities) -> CheckResult:
    kernel = _read("/proc/sys/kernel/seccomp/actions_avail") is not None
    status_text = _read("/proc/self/status") or ""
    mode = next((line.split()[1] for line in status_text.splitlines() if line.startswith("Seccomp:")), "?")
    try:
        binding: str | None = importlib.metadata.version("pyseccomp")
    except importlib.metadata.PackageNotFoundError:
        binding = None
    data = {"filters": kernel, "builds": caps.seccomp is None, "process_mode": mode, "pyseccomp": binding}
    if caps.seccomp is None:
        return CheckResult(
            name="seccomp",
            status="ok",
            detail=f"filters build, pyseccomp {binding} (this process: mode {mode})",
            data=data,
        )
    if not kernel:
        return CheckResult(
            name="seccomp",
            status="missing",
            detail="the kernel has no seccomp filter support",
            fix="use a kernel built with CONFIG_SECCOMP_FILTER",
            data=data,
        )
    return CheckResult(
        name="seccomp",
        status="warn",
        detail=caps.seccomp,
        fix="apt-get install libseccomp2 && pip install pyseccomp",
        data=data,
    )


def landlock_line(caps: Capabilities) -> CheckResult:
    if caps.landlock_abi > 0:
        return CheckResult(
            name="landlock", status="ok", detail=f"ABI {caps.landlock_abi}", data={"abi": caps.landlock_abi}
        )
    if caps.landlock_errno == errno.EOPNOTSUPP:
        detail, fix = (
            "built into the kernel but disabled at boot",
            "add landlock to the lsm= kernel parameter",
        )
    else:
        name = errno.errorcode.get(caps.landlock_errno, str(caps.landlock_errno))
        detail, fix = f"not available ({name})", "use a kernel >= 5.13 with Landlock"
    return CheckResult(name="landlock", status="missing", detail=detail, fix=fix, data={"abi": None})
