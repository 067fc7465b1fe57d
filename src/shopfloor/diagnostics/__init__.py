"""What this machine offers Shopfloor, and what is missing with its fix (``shopfloor doctor``).

Layers add lines with ``register_check(name, fn)`` where ``fn(settings) -> CheckResult``;
``shopfloor doctor`` imports ``shopfloor.<layer>._doctor`` modules so such registrations
happen only when the doctor runs.
"""

from shopfloor.diagnostics._builtin import BUILTIN_CHECKS
from shopfloor.diagnostics._checks import (
    Check,
    CheckFn,
    CheckResult,
    CheckStatus,
    FunctionCheck,
    register_check,
    registered_checks,
    run_checks,
    unregister_check,
)
from shopfloor.diagnostics._services import ping_redis, postgres_target

__all__ = [
    "BUILTIN_CHECKS",
    "Check",
    "CheckFn",
    "CheckResult",
    "CheckStatus",
    "FunctionCheck",
    "ping_redis",
    "postgres_target",
    "register_check",
    "registered_checks",
    "run_checks",
    "unregister_check",
]
