"""Run a skill's entry point in the sandbox: JSON in on stdin, JSON out on stdout, checked.

The skill directory is mounted read-only at ``/skill``, the workspace directory at ``/workspace``
(the working directory), the dependency environment read-only where its runtime expects it.
Whatever goes wrong comes back as a ToolExecutionError worded for the model to act on.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jsonschema

from shopfloor._registry import Registry
from shopfloor.config import Settings
from shopfloor.errors import SandboxPolicyError, ToolExecutionError
from shopfloor.sandbox import (
    Command,
    ExecRequest,
    ExecResult,
    Mount,
    Sandbox,
    SandboxPolicy,
    parse_size,
    select_backend,
)
from shopfloor.skills._deps import SkillEnvironment
from shopfloor.skills._skill import Skill

__all__ = ["SKILL_MOUNT", "SkillRun", "effective_policy", "run_entry_point"]

SKILL_MOUNT = "/skill"
_STDERR_TAIL = 1500


@dataclass(frozen=True, kw_only=True)
class SkillRun:
    """What one execution did, for the step's record (stdout is the parsed output)."""

    skill: str
    digest: str
    exit_code: int
    stderr: str
    wall_time: float
    killed_by: str | None
    backend: str
    output: Any = None
    error: str | None = None
    commit: str | None = None

    def to_json(self) -> dict[str, Any]:
        return dict(vars(self))


def effective_policy(skill: Skill, policy: SandboxPolicy) -> SandboxPolicy:
    """The agent's policy, with the skill's own timeout when shorter; a need it cannot meet is an error."""
    config = skill.config
    assert config is not None  # checked by the caller
    needs = config.sandbox
    if needs.memory is not None and parse_size(needs.memory) > policy.memory:
        raise ToolExecutionError(
            f"{skill.name}: needs {needs.memory} of memory but the agent's sandbox allows "
            f"{policy.memory >> 20} MiB; raise sandbox.memory in the agent spec"
        )
    if needs.network != "none":
        allowed = {str(rule) for rule in policy.network}
        missing = [host for host in needs.network if host not in allowed]
        if missing:
            raise ToolExecutionError(
                f"{skill.name}: needs network access to {', '.join(missing)}, which the agent's sandbox "
                "does not allow; add them to sandbox.network in the agent spec"
            )
    timeout = min(config.timeout, policy.timeout)
    return dataclasses.replace(policy, timeout=timeout)


def _tail(data: bytes) -> str:
    text = data.decode("utf-8", errors="replace").strip()
    return text if len(text) <= _STDERR_TAIL else "..." + text[-_STDERR_TAIL:]


def _parse_stdout(skill: Skill, stdout: bytes) -> Any:
    text = stdout.decode("utf-8", errors="replace").strip()
    if not text:
        raise ToolExecutionError(f"{skill.name}: printed nothing; the entry point must print one JSON value")
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        pass
    # Tolerate chatter before the result: the last line is the JSON value.
    try:
        return json.loads(text.splitlines()[-1])
    except json.JSONDecodeError:
        raise ToolExecutionError(
            f"{skill.name}: did not print JSON on stdout (last line: {text.splitlines()[-1][:200]!r})"
        ) from None


def _check(skill: Skill, result: ExecResult, timeout: float, *, schema_checked: bool) -> Any:
    stderr = _tail(result.stderr)
    if result.killed_by == "timeout":
        raise ToolExecutionError(
            f"{skill.name}: timed out after {timeout:g} s and was stopped; try a smaller input"
        )
    if result.killed_by is not None:
        raise ToolExecutionError(f"{skill.name}: stopped by the sandbox ({result.killed_by} limit)\n{stderr}")
    if result.exit_code != 0:
        raise ToolExecutionError(f"{skill.name}: exited with status {result.exit_code}\n{stderr}".rstrip())
    output = _parse_stdout(skill, result.stdout)
    if schema_checked and skill.output_schema is not None:
        errors = sorted(jsonschema.Draft202012Validator(skill.output_schema).iter_errors(output), key=str)
        if errors:
            details = "; ".join(
                f"{'/'.join(map(str, e.absolute_path)) or 'output'}: {e.message}" for e in errors
            )
            raise ToolExecutionError(f"{skill.name}: output does not match its output schema: {details}")
    return output


def _argv(skill: Skill, env: SkillEnvironment, mode: str | None) -> list[str]:
    config = skill.config
    assert config is not None
    entry = f"{SKILL_MOUNT}/{config.entry}"
    argv = [env.interpreter, "-B", entry] if config.runtime == "python" else [env.interpreter, entry]
    return [*argv, mode] if mode else argv


async def run_entry_point(
    skill: Skill,
    args: dict[str, Any],
    *,
    env: SkillEnvironment,
    workspace: Path,
    policy: SandboxPolicy,
    settings: Settings,
    tenant: str,
    sandbox: Sandbox | None = None,
    mode: str | None = None,
    backends: Registry[type[Sandbox]] | None = None,
    extra_env: Mapping[str, str] | None = None,
) -> SkillRun:
    """Run once. A failure of the skill comes back in ``SkillRun.error``; one of the setup raises.
    ``extra_env``: the secrets the agent grants, as environment variables."""
    if skill.config is None:
        raise ToolExecutionError(
            f"{skill.name}: has no entry point (no shopfloor.yaml); read its instructions"
        )
    try:
        policy = effective_policy(skill, policy)
        backend = sandbox or select_backend(policy, settings, backends=backends)(settings)
    except SandboxPolicyError as exc:
        raise ToolExecutionError(f"{skill.name}: {exc}") from exc
    mounts = [Mount(host_path=skill.path, sandbox_path=SKILL_MOUNT, read_only=True), *env.mounts]
    request = ExecRequest(
        policy=policy,
        command=Command(
            argv=tuple(_argv(skill, env, mode)),
            stdin=json.dumps(args).encode(),
            env={**(extra_env or {}), "SHOPFLOOR_SKILL_DIR": SKILL_MOUNT, "PYTHONUNBUFFERED": "1", **env.env},
            timeout=policy.timeout,
        ),
        workspace=workspace,
        tenant=tenant,
        mounts=tuple(mounts),
    )
    result = await backend.run(request)
    run = SkillRun(
        skill=skill.name,
        digest=skill.digest,
        exit_code=result.exit_code,
        stderr=_tail(result.stderr),
        wall_time=result.wall_time,
        killed_by=result.killed_by,
        backend=result.backend,
    )
    try:
        output = _check(skill, result, policy.timeout, schema_checked=mode is None)
        return dataclasses.replace(run, output=output)
    except ToolExecutionError as exc:
        return dataclasses.replace(run, error=str(exc))
