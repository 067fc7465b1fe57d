"""``shopfloor doctor`` lines for sandboxes: the kernel features (bubblewrap, user namespaces, cgroups,
seccomp, Landlock, as the sandbox's own probe finds them: ``_host_checks``), then which backend ``auto``
picks and which layers it stacks.
"""

from __future__ import annotations

from collections.abc import Callable

from shopfloor.config import Settings
from shopfloor.diagnostics import CheckResult, register_check
from shopfloor.errors import SandboxError
from shopfloor.sandbox._base import select_backend
from shopfloor.sandbox._caps import Capabilities, probe_capabilities
from shopfloor.sandbox._host_checks import (
    bubblewrap_line,
    cgroups_line,
    landlock_line,
    seccomp_line,
    userns_line,
)
from shopfloor.sandbox._policy import SandboxPolicy

__all__ = ["check_gvisor", "check_sandbox_backend"]


def check_sandbox_backend(settings: Settings) -> CheckResult:
    caps = probe_capabilities()
    try:
        backend = select_backend(SandboxPolicy(), settings, caps)
    except SandboxError as exc:
        return CheckResult(
            name="sandbox",
            status="missing",
            detail="no backend can confine commands: skills and agent code will not run",
            fix=str(exc).split("Fix: ", 1)[-1],
            data={"backend": None, "reason": str(exc)},
        )
    layers = {line.layer: line.ok for line in caps.lines()}
    active = [name for name, ok in layers.items() if ok]
    detail = f"{backend.name}: {backend.description}"
    missing = [name for name in ("root (per-tenant uid)", "cgroups", "seccomp") if not layers.get(name)]
    return CheckResult(
        name="sandbox",
        status="warn" if missing else "ok",
        detail=detail + (f" (without: {', '.join(missing)})" if missing else ""),
        fix="run the worker as root on a host with writable cgroups and libseccomp" if missing else "",
        data={"backend": backend.name, "layers": active},
    )


def check_gvisor(settings: Settings) -> CheckResult:
    caps = probe_capabilities()
    if caps.runsc is None:
        return CheckResult(
            name="gvisor",
            status="warn",
            detail="optional stronger backend not installed",
            fix="apt-get install runsc",
        )
    return CheckResult(name="gvisor", status="ok", detail=f"runsc at {caps.runsc} (isolation: gvisor)")


def _probed(line: Callable[[Capabilities], CheckResult]) -> Callable[[Settings], CheckResult]:
    def check(settings: Settings) -> CheckResult:
        return line(probe_capabilities())

    return check


for _name, _line in (
    ("bubblewrap", bubblewrap_line),
    ("user namespaces", userns_line),
    ("cgroups", cgroups_line),
    ("seccomp", seccomp_line),
    ("landlock", landlock_line),
):
    register_check(_name, _probed(_line))
register_check("sandbox", check_sandbox_backend)
register_check("gvisor", check_gvisor)
