"""Sandboxes: where every skill and piece of agent-written code runs, isolated and resource-bounded.

``open_sandbox(policy, mounts, workspace=..., tenant=..., settings=...)`` opens a session (a sandbox that
stays up between execs); ``run_sandboxed(...)`` runs one command in a fresh one. Backends (``bwrap``,
``landlock``, ``gvisor``, ``none``) are registered by name and chosen by ``policy.isolation``.
"""

from shopfloor.sandbox._base import (
    AUTO_ORDER,
    Sandbox,
    SandboxSession,
    get_backend,
    open_sandbox,
    register_backend,
    registered_backends,
    run_sandboxed,
    select_backend,
)
from shopfloor.sandbox._caps import Capabilities, CapabilityLine, probe_capabilities
from shopfloor.sandbox._policy import ExecResult, KilledBy, Mount, NetworkRule, SandboxPolicy, parse_size
from shopfloor.sandbox._proxy import ProxyRecord
from shopfloor.sandbox._python import SYSTEM_PYTHON, PythonRuntime, python_runtime
from shopfloor.sandbox._tenant import tenant_uid

__all__ = [
    "AUTO_ORDER",
    "SYSTEM_PYTHON",
    "Capabilities",
    "CapabilityLine",
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
    "register_backend",
    "registered_backends",
    "run_sandboxed",
    "select_backend",
    "tenant_uid",
]
