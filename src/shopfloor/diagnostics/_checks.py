"""The framework behind ``shopfloor doctor``: checks registered by name, run side by side.

A check looks at one thing the machine offers (a Python version, a service, a kernel
feature) and says ``ok``, ``warn`` (usable with a caveat) or ``missing``, with the
command that fixes it. Layers add their own lines with ``register_check``; a check
never raises (a crash is reported as a ``warn`` line naming the exception) and never
takes more than a few seconds, so one slow probe cannot hide the rest of the screen.
"""

from __future__ import annotations

import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Literal, overload

from shopfloor.config import Settings

__all__ = [
    "Check",
    "CheckFn",
    "CheckResult",
    "CheckStatus",
    "FunctionCheck",
    "register_check",
    "registered_checks",
    "run_checks",
    "unregister_check",
]

CheckStatus = Literal["ok", "warn", "missing"]
#: how long one check may take before its line says so; probes use ~1 s timeouts
DEFAULT_TIMEOUT = 10.0


@dataclass(frozen=True, kw_only=True)
class CheckResult:
    name: str
    status: CheckStatus
    #: what was found, in one line
    detail: str
    #: the command or step that fixes it ("" when there is nothing to fix)
    fix: str = ""
    #: machine-readable findings for ``--json`` (versions, controller lists...)
    data: Mapping[str, Any] = field(default_factory=dict)


class Check(ABC):
    """One line of ``shopfloor doctor``."""

    name: str

    @abstractmethod
    def run(self, settings: Settings) -> CheckResult:
        """Probe and report; blocking is fine (checks run in their own threads)."""


CheckFn = Callable[[Settings], CheckResult]


class FunctionCheck(Check):
    def __init__(self, name: str, function: CheckFn) -> None:
        self.name = name
        self.function = function

    def run(self, settings: Settings) -> CheckResult:
        return self.function(settings)


_CHECKS: dict[str, Check] = {}


@overload
def register_check(name: str, fn: CheckFn | Check) -> None: ...
@overload
def register_check(name: str, fn: None = None) -> Callable[[CheckFn], CheckFn]: ...
def register_check(name: str, fn: CheckFn | Check | None = None) -> Callable[[CheckFn], CheckFn] | None:
    """Add a line to ``shopfloor doctor`` (a function of the settings, or a Check).

    Registering a name again replaces that check in place. Without ``fn``, returns a decorator.
    """
    if fn is None:

        def decorator(function: CheckFn) -> CheckFn:
            register_check(name, function)
            return function

        return decorator
    _CHECKS[name] = fn if isinstance(fn, Check) else FunctionCheck(name, fn)
    return None


def unregister_check(name: str) -> None:
    _CHECKS.pop(name, None)


def registered_checks() -> list[str]:
    return list(_CHECKS)


def _run_one(check: Check, settings: Settings, out: dict[str, CheckResult]) -> None:
    try:
        result = check.run(settings)
    except Exception as exc:  # a broken probe must not hide every other line
        result = CheckResult(
            name=check.name,
            status="warn",
            detail=f"the check itself failed: {type(exc).__name__}: {exc}",
            fix="report this as a Shopfloor bug",
        )
    out[check.name] = replace(result, name=check.name)


def run_checks(
    settings: Settings, *, names: list[str] | None = None, timeout: float = DEFAULT_TIMEOUT
) -> list[CheckResult]:
    """Run the registered checks (or those named) concurrently; results in registration order."""
    checks = [check for name, check in _CHECKS.items() if names is None or name in names]
    results: dict[str, CheckResult] = {}
    # Daemon threads: a probe stuck in a kernel call must not keep the process alive.
    threads = [
        threading.Thread(
            target=_run_one, args=(check, settings, results), daemon=True, name=f"check {check.name}"
        )
        for check in checks
    ]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + timeout
    for thread in threads:
        thread.join(max(0.0, deadline - time.monotonic()))
    return [
        results.get(check.name)
        or CheckResult(
            name=check.name,
            status="warn",
            detail=f"no answer within {timeout:g} s",
            fix="run the probe by hand to see where it hangs",
        )
        for check in checks
    ]
