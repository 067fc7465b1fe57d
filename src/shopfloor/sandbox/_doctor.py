"""``shopfloor doctor`` lines for sandboxes: the kernel features (bubblewrap, user namespaces, cgroups,
seccomp, Landlock, as the sandbox's own probe finds them: ``_host_checks``), then which backend ``auto``
picks and which layers it stacks.
"""

from __future__ import annotations

from collections.abc import Callable

from shopfloor.config import Settings
from shopfloor.diagnostics import CheckFn, CheckResult
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

__all__ = ["check_gvisor", "check_sandbox_backend", "sandbox_checks"]


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


def _probed(line: Callable[[Capabilities], CheckResult]) -> CheckFn:
    def check(settings: Settings) -> CheckResult:
        return line(probe_capabilities())

    return check


def sandbox_checks() -> dict[str, CheckFn]:
    """The sandbox layer's doctor lines: what the host offers each isolation layer (from the
    sandbox's own probe), then the backend it picks and gVisor."""
    return {
        "bubblewrap": _probed(bubblewrap_line),
        "user namespaces": _probed(userns_line),
        "cgroups": _probed(cgroups_line),
        "seccomp": _probed(seccomp_line),
        "landlock": _probed(landlock_line),
        "sandbox": check_sandbox_backend,
        "gvisor": check_gvisor,
    }
