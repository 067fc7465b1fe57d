"""The framework behind ``shopfloor doctor``: checks in a registry by name, run side by side.

A check looks at one thing the machine offers (a Python version, a service, a kernel
feature) and says ``ok``, ``warn`` (usable with a caveat) or ``missing``, with the
command that fixes it. Layers bring their own lines (``sandbox_checks()``,
``skill_checks()``), which the composition root adds to ``doctor_checks()``; a check
never raises (a crash is reported as a ``warn`` line naming the exception) and never
takes more than a few seconds, so one slow probe cannot hide the rest of the screen.
"""

from __future__ import annotations

import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Literal

from shopfloor._registry import Registry
from shopfloor.config import Settings

__all__ = [
    "Check",
    "CheckFn",
    "CheckResult",
    "CheckStatus",
    "FunctionCheck",
    "run_checks",
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
    settings: Settings,
    registry: Registry[Check | CheckFn],
    *,
    names: list[str] | None = None,
    timeout: float = DEFAULT_TIMEOUT,
) -> list[CheckResult]:
    """Run the checks of ``registry`` (or those named) concurrently; results in registration order.
    An entry is a Check or a function of the settings."""
    checks: list[Check] = []
    for name in registry:
        if names is None or name in names:
            entry = registry.get(name)
            checks.append(entry if isinstance(entry, Check) else FunctionCheck(name, entry))
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
