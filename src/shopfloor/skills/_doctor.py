"""``shopfloor doctor`` lines for skills: the trust policy, the built-in skills, the skill runtimes."""

from __future__ import annotations

import shutil

from shopfloor.config import Settings
from shopfloor.diagnostics import CheckFn, CheckResult
from shopfloor.errors import ShopfloorError
from shopfloor.sandbox import SYSTEM_PYTHON
from shopfloor.skills._builtin import BUILTIN_DIR, builtin_skill_names
from shopfloor.skills._signing import TrustPolicy, open_skill

__all__ = ["check_skill_runtimes", "check_skills", "skill_checks"]


def check_skills(settings: Settings) -> CheckResult:
    try:
        policy = TrustPolicy.from_settings(settings)
        names = [open_skill(BUILTIN_DIR / name, policy).name for name in builtin_skill_names()]
    except ShopfloorError as exc:
        return CheckResult(name="skills", status="warn", detail=str(exc)[:200], fix="reinstall shopfloor")
    mode = "strict" if policy.strict else "compatibility"
    signed = "signatures required" if policy.require_signed else "unsigned skills allowed"
    detail = (
        f"{len(policy.trusted_keys)} trusted keys, {signed}, {mode} mode; built-in {', '.join(names)} verify"
    )
    data = {"trusted_keys": sorted(policy.trusted_keys), "builtin": names}
    return CheckResult(name="skills", status="ok", detail=detail, data=data)


def check_skill_runtimes(settings: Settings) -> CheckResult:
    found = {
        "python": SYSTEM_PYTHON.exists(),
        "node": bool(shutil.which("node")),
        "npm": bool(shutil.which("npm")),
    }
    missing = [name for name, ok in found.items() if not ok]
    if not found["python"]:
        return CheckResult(
            name="skill runtimes",
            status="missing",
            detail=f"no {SYSTEM_PYTHON}: Python skills cannot run in the sandbox",
            fix="apt-get install python3 python3-venv",
            data=found,
        )
    if missing:
        return CheckResult(
            name="skill runtimes",
            status="warn",
            detail=f"python ok; {', '.join(missing)} missing: Node.js skills cannot run",
            fix="apt-get install nodejs npm",
            data=found,
        )
    return CheckResult(
        name="skill runtimes", status="ok", detail="python3, node and npm available", data=found
    )


def skill_checks() -> dict[str, CheckFn]:
    """The skills layer's doctor lines."""
    return {"skills": check_skills, "skill runtimes": check_skill_runtimes}
