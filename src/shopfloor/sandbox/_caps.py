"""What isolation this host can provide, probed (never assumed): the one probe that the backends
choose by and that ``shopfloor doctor``'s isolation lines report (``_host_checks``), so the two
cannot disagree."""

from __future__ import annotations

import ctypes
import functools
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

__all__ = ["Capabilities", "CapabilityLine", "landlock_status", "probe_capabilities"]

_SYS_LANDLOCK_CREATE_RULESET = 444  # same number on every architecture (new syscalls are unified)
_LANDLOCK_CREATE_RULESET_VERSION = 1


@dataclass(frozen=True, kw_only=True)
class CapabilityLine:
    layer: str
    ok: bool
    detail: str


@dataclass(frozen=True, kw_only=True)
class Capabilities:
    root: bool
    bwrap: str | None  # path
    bwrap_version: str | None
    userns: str | None  # None: unprivileged user namespaces work; else why not
    cgroup: str | None  # "cgroup v1 (...)" / "cgroup v2 at ..." or None
    seccomp: str | None  # None: filters build; else why not
    landlock_abi: int  # 0: unavailable
    runsc: str | None
    compiler: str | None
    #: which of memory, cpu and pids the cgroup setup limits
    cgroup_limits: tuple[str, ...] = ()
    #: why Landlock is unavailable (errno of the probe; 0 when it is available)
    landlock_errno: int = 0

    def lines(self) -> list[CapabilityLine]:
        return [
            CapabilityLine(
                layer="root (per-tenant uid)",
                ok=self.root,
                detail="yes: own uid per tenant, total disk bounded"
                if self.root
                else "not root: shared uid, disk bounded per file only",
            ),
            CapabilityLine(
                layer="bubblewrap",
                ok=self.bwrap is not None and self.userns is None,
                detail=f"{self.bwrap_version} at {self.bwrap}"
                if self.bwrap
                else "not installed (apt-get install bubblewrap)",
            ),
            CapabilityLine(
                layer="user namespaces",
                ok=self.userns is None,
                detail=self.userns or "unprivileged user namespaces work",
            ),
            CapabilityLine(
                layer="cgroups", ok=self.cgroup is not None, detail=self.cgroup or "none writable"
            ),
            CapabilityLine(
                layer="seccomp", ok=self.seccomp is None, detail=self.seccomp or "filters build (pyseccomp)"
            ),
            CapabilityLine(
                layer="landlock",
                ok=self.landlock_abi > 0,
                detail=f"ABI {self.landlock_abi}" if self.landlock_abi else "not available in this kernel",
            ),
            CapabilityLine(
                layer="gvisor (runsc)",
                ok=self.runsc is not None,
                detail=self.runsc or "not installed (apt-get install runsc)",
            ),
            CapabilityLine(
                layer="launcher compiler",
                ok=self.compiler is not None,
                detail=self.compiler or "no cc (apt-get install gcc)",
            ),
        ]


def landlock_status() -> tuple[int, int]:
    """Landlock's ABI version (0: unavailable) and the errno that says why not."""
    libc = ctypes.CDLL(None, use_errno=True)
    syscall = libc.syscall
    syscall.restype = ctypes.c_long
    syscall.argtypes = [ctypes.c_long, ctypes.c_void_p, ctypes.c_size_t, ctypes.c_uint32]
    version = int(syscall(_SYS_LANDLOCK_CREATE_RULESET, None, 0, _LANDLOCK_CREATE_RULESET_VERSION))
    if version < 0:
        return 0, ctypes.get_errno()
    return version, 0


def _userns_problem(bwrap: str | None) -> str | None:
    max_ns = Path("/proc/sys/user/max_user_namespaces")
    if max_ns.exists() and max_ns.read_text().strip() == "0":
        return "user.max_user_namespaces is 0 (fix: sysctl user.max_user_namespaces=15000)"
    legacy = Path("/proc/sys/kernel/unprivileged_userns_clone")
    if legacy.exists() and legacy.read_text().strip() == "0":
        return "kernel.unprivileged_userns_clone is 0 (fix: sysctl kernel.unprivileged_userns_clone=1)"
    if bwrap is None:
        return None
    # The sandbox runs bwrap as an unprivileged uid: try exactly that (AppArmor may forbid it).
    kwargs: dict[str, object] = {}
    if os.geteuid() == 0:
        kwargs = {"user": 65534, "group": 65534, "extra_groups": []}
    try:
        result = subprocess.run(
            [bwrap, "--unshare-all", "--unshare-user", "--ro-bind", "/", "/", "/bin/true"],
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
            env={"PATH": "/usr/bin:/bin"},
            **kwargs,  # type: ignore[call-overload]
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"bwrap could not start: {exc}"
    if result.returncode != 0:
        return f"bwrap cannot create namespaces as an unprivileged uid: {result.stderr.strip()}"
    return None


@functools.cache
def probe_capabilities() -> Capabilities:
    """Probe once per process (about 20 ms)."""
    from shopfloor.sandbox._host import host_cgroups
    from shopfloor.sandbox._seccomp import seccomp_available

    bwrap = shutil.which("bwrap")
    version = None
    if bwrap:
        result = subprocess.run([bwrap, "--version"], capture_output=True, text=True, check=False)
        version = result.stdout.strip() or None
    cgroups = host_cgroups()
    abi, landlock_errno = landlock_status()
    return Capabilities(
        root=os.geteuid() == 0,
        bwrap=bwrap,
        bwrap_version=version,
        userns=_userns_problem(bwrap),
        cgroup=cgroups.describe() if cgroups else None,
        seccomp=seccomp_available(),
        landlock_abi=abi,
        runsc=shutil.which("runsc"),
        compiler=shutil.which("cc") or shutil.which("gcc") or shutil.which("clang"),
        cgroup_limits=cgroups.limits() if cgroups else (),
        landlock_errno=landlock_errno,
    )
