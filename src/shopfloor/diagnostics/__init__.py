"""What this machine offers Shopfloor, and what is missing with its fix (``shopfloor doctor``).

``doctor_checks()`` is a registry of the built-in lines; layers bring their own as functions
``fn(settings) -> CheckResult`` (``shopfloor.sandbox.sandbox_checks()``,
``shopfloor.skills.skill_checks()``) and the composition root adds them to it.
"""

from shopfloor.diagnostics._builtin import BUILTIN_CHECKS, doctor_checks
from shopfloor.diagnostics._checks import (
    Check,
    CheckFn,
    CheckResult,
    CheckStatus,
    FunctionCheck,
    run_checks,
)
from shopfloor.diagnostics._services import ping_redis, postgres_target

__all__ = [
    "BUILTIN_CHECKS",
    "Check",
    "CheckFn",
    "CheckResult",
    "CheckStatus",
    "FunctionCheck",
    "doctor_checks",
    "ping_redis",
    "postgres_target",
    "run_checks",
]
