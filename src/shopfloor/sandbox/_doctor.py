"""``shopfloor doctor`` lines for sandboxes: which backend ``auto`` picks and which layers it stacks.

The kernel features themselves (bubblewrap, user namespaces, cgroups, seccomp, Landlock) have their own
lines in ``shopfloor.diagnostics``; these say what the sandbox layer makes of them.
"""

from __future__ import annotations

from shopfloor.config import Settings
from shopfloor.diagnostics import CheckFn, CheckResult
from shopfloor.errors import SandboxError
from shopfloor.sandbox._base import select_backend
from shopfloor.sandbox._caps import probe_capabilities
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


def sandbox_checks() -> dict[str, CheckFn]:
    """The sandbox layer's doctor lines."""
    return {"sandbox": check_sandbox_backend, "gvisor": check_gvisor}
