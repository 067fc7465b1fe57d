"""The checks every installation gets, in the order the screen shows them.

The isolation lines (bubblewrap, user namespaces, cgroups, seccomp, Landlock) come from the sandbox
layer (``shopfloor.sandbox._doctor``), which reports its own probe.
"""

from __future__ import annotations

from shopfloor._registry import Registry
from shopfloor.diagnostics._checks import Check, CheckFn
from shopfloor.diagnostics._services import check_postgres, check_redis
from shopfloor.diagnostics._system import check_data_dir, check_models, check_python, check_sqlite

__all__ = ["BUILTIN_CHECKS", "doctor_checks"]

BUILTIN_CHECKS = {
    "python": check_python,
    "data dir": check_data_dir,
    "sqlite": check_sqlite,
    "models": check_models,
    "postgresql": check_postgres,
    "redis": check_redis,
}


def doctor_checks() -> Registry[Check | CheckFn]:
    """A fresh registry of the checks every installation gets; layers add theirs to it."""
    return Registry("doctor check", BUILTIN_CHECKS)
