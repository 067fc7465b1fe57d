"""Sandboxes: where every skill and piece of agent-written code runs, isolated and resource-bounded.

``open_sandbox(policy, mounts, workspace=..., tenant=..., settings=...)`` opens a session (a sandbox that
stays up between execs, served by a small helper inside it); ``run_sandboxed(...)`` runs one command in
a fresh one. Backends (``bwrap``, ``landlock``, ``gvisor``, ``none``) are registered by name and chosen by
``policy.isolation``; ``auto`` takes bwrap, else Landlock, and refuses when neither can confine.

Layers of the bwrap backend, outermost first: a cgroup per sandbox (v1 or v2: memory, CPU quota, pids;
every process killed at the end), a per-tenant uid (allocated once per tenant from a table under
``SHOPFLOOR_HOME``, never shared; the workspace is chowned to it, mode 0700) that a compiled C launcher
drops to before any namespace is made, RLIMIT_AS/FSIZE/NOFILE, a writable area bounded in total bytes
(``policy.disk``) and files (``policy.files``): a tmpfs holding /tmp and an overlay's upper layer over
the workspace, applied to the workspace at release (``_disk``), bubblewrap (all namespaces, no
capabilities, read-only system dirs, minimal /etc, the workspace read-write at /workspace, read-only
root), and a seccomp filter. Network is off unless the policy lists HOST:PORT pairs; then an HTTP
CONNECT proxy outside the sandbox, one per sandbox with connection and rate caps, lets exactly those
through (names that resolve to private addresses only when allowed explicitly); the session helper
hands it each connection's fd.

Python inside: ``/usr/bin/python3`` (the host's /usr is visible read-only) and any venv made from it,
mounted read-only at its host path; ``python_runtime(venv)`` returns the interpreter and the mounts.
"""

from shopfloor.sandbox._base import (
    AUTO_ORDER,
    Sandbox,
    SandboxSession,
    get_backend,
    open_sandbox,
    run_sandboxed,
    sandbox_backends,
    select_backend,
)
from shopfloor.sandbox._caps import Capabilities, CapabilityLine, probe_capabilities
from shopfloor.sandbox._doctor import sandbox_checks
from shopfloor.sandbox._policy import (
    Command,
    ExecRequest,
    ExecResult,
    KilledBy,
    Mount,
    NetworkRule,
    SandboxPolicy,
    parse_size,
)
from shopfloor.sandbox._proxy import ProxyRecord
from shopfloor.sandbox._python import SYSTEM_PYTHON, PythonRuntime, python_runtime
from shopfloor.sandbox._tenant import tenant_uid

__all__ = [
    "AUTO_ORDER",
    "SYSTEM_PYTHON",
    "Capabilities",
    "CapabilityLine",
    "Command",
    "ExecRequest",
    "ExecResult",
    "KilledBy",
    "Mount",
    "NetworkRule",
    "ProxyRecord",
    "PythonRuntime",
    "Sandbox",
    "SandboxPolicy",
    "SandboxSession",
    "get_backend",
    "open_sandbox",
    "parse_size",
    "probe_capabilities",
    "python_runtime",
    "run_sandboxed",
    "sandbox_backends",
    "sandbox_checks",
    "select_backend",
    "tenant_uid",
]
