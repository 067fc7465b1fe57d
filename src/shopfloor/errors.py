"""The one exception hierarchy of Shopfloor.

Every error a user can cause says what was wrong, where, and how to fix it.
Control-flow signals (a run must wait for approval, a run was cancelled) are
not failures and live in their own branch.

ShopfloorError
├── ConfigError                 bad configuration file or environment value
├── SpecError                   an agent spec (agent.yaml) is invalid; carries file:line:column
├── ModelError
│   ├── UnknownModelError       a model reference names no provider or catalogue entry
│   ├── ModelRequestError       the server refused the request (4xx): fix the request
│   ├── ModelUnavailableError   the server failed or timed out after retries (5xx, 429, network)
│   ├── ModelRequestsBlocked    a real model request was made where tests forbid it
│   ├── ModelOutputError        the model's output could not be parsed as the required JSON
│   └── ModelInstallError       an embedded model could not be installed or verified
├── ToolError
│   ├── ToolArgumentsError      arguments do not match the tool's input schema
│   └── ToolExecutionError      the tool ran and failed
├── WorkspaceError
│   ├── WorkspacePathError      a path escapes the workspace or is malformed
│   ├── WorkspaceNotFoundError  a file, commit, ref or workspace does not exist
│   ├── WorkspaceQuotaError     a write would exceed a quota
│   ├── WorkspaceEditError      edit's old text is absent or ambiguous
│   ├── WorkspaceReadOnlyError  a write to a read-only view or mount
│   └── WorkspaceConflictError  a ref compare-and-swap lost the race; retry
├── SandboxError
│   ├── SandboxUnavailableError no isolation layer can be set up here (says the fix)
│   └── SandboxPolicyError      a policy value is invalid
├── SkillError
│   ├── SkillFormatError        SKILL.md or the sidecar is invalid (file:line)
│   ├── SkillSignatureError     signature missing, broken or by an untrusted key
│   ├── SkillDependencyError    the skill's dependencies could not be installed
│   └── SkillRegistryError      publish/lookup in the skill registry failed
├── RunError
│   ├── RunNotFoundError        no run with that id
│   ├── RunStateError           the run is not in a state that allows the operation
│   ├── ReplayDivergence        a replayed run asked for a step its record does not have
│   └── DurableEngineError      the installed DBOS is not the one the runtime was written for
└── TelemetryError              trace store or exporter failure

ShopfloorSignal (BaseException subclass of nothing of ours: not an error)
├── ApprovalRequired            a tool call needs a person's approval before it runs
└── RunCancelled                the run was cancelled; stop cooperatively
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = [
    "ApprovalRequired",
    "ConfigError",
    "DurableEngineError",
    "ModelError",
    "ModelInstallError",
    "ModelOutputError",
    "ModelRequestError",
    "ModelRequestsBlocked",
    "ModelUnavailableError",
    "ReplayDivergence",
    "RunCancelled",
    "RunError",
    "RunNotFoundError",
    "RunStateError",
    "SandboxError",
    "SandboxPolicyError",
    "SandboxUnavailableError",
    "ShopfloorError",
    "ShopfloorSignal",
    "SkillDependencyError",
    "SkillError",
    "SkillFormatError",
    "SkillRegistryError",
    "SkillSignatureError",
    "SourceLocation",
    "SpecError",
    "TelemetryError",
    "ToolArgumentsError",
    "ToolError",
    "ToolExecutionError",
    "UnknownModelError",
    "WorkspaceConflictError",
    "WorkspaceEditError",
    "WorkspaceError",
    "WorkspaceNotFoundError",
    "WorkspacePathError",
    "WorkspaceQuotaError",
    "WorkspaceReadOnlyError",
]


@dataclass(frozen=True, kw_only=True)
class SourceLocation:
    """A place in a user's file; line and column are 1-based."""

    file: str
    line: int | None = None
    column: int | None = None

    def __str__(self) -> str:
        where = self.file
        if self.line is not None:
            where += f":{self.line}"
            if self.column is not None:
                where += f":{self.column}"
        return where


class ShopfloorError(Exception):
    """Base of every failure Shopfloor raises on purpose."""


class ConfigError(ShopfloorError):
    pass


class SpecError(ShopfloorError):
    """One or more problems in a spec file, each with its location."""

    def __init__(self, problems: list[tuple[SourceLocation, str]]) -> None:
        self.problems = problems
        super().__init__("\n".join(f"{loc}: {msg}" for loc, msg in problems))


class ModelError(ShopfloorError):
    pass


class UnknownModelError(ModelError):
    pass


class ModelRequestError(ModelError):
    def __init__(self, message: str, *, status: int | None = None) -> None:
        self.status = status
        super().__init__(message)


class ModelUnavailableError(ModelError):
    pass


class ModelRequestsBlocked(ModelError):
    pass


class ModelOutputError(ModelError):
    pass


class ModelInstallError(ModelError):
    pass


class ToolError(ShopfloorError):
    pass


class ToolArgumentsError(ToolError):
    pass


class ToolExecutionError(ToolError):
    pass


class WorkspaceError(ShopfloorError):
    pass


class WorkspacePathError(WorkspaceError):
    pass


class WorkspaceNotFoundError(WorkspaceError):
    pass


class WorkspaceQuotaError(WorkspaceError):
    pass


class WorkspaceEditError(WorkspaceError):
    pass


class WorkspaceReadOnlyError(WorkspaceError):
    pass


class WorkspaceConflictError(WorkspaceError):
    pass


class SandboxError(ShopfloorError):
    pass


class SandboxUnavailableError(SandboxError):
    pass


class SandboxPolicyError(SandboxError):
    pass


class SkillError(ShopfloorError):
    pass


class SkillFormatError(SkillError):
    pass


class SkillSignatureError(SkillError):
    pass


class SkillDependencyError(SkillError):
    pass


class SkillRegistryError(SkillError):
    pass


class RunError(ShopfloorError):
    pass


class RunNotFoundError(RunError):
    pass


class RunStateError(RunError):
    pass


class ReplayDivergence(RunError):
    """The replayed loop asked for step ``actual`` where the record has ``expected`` (None: no more steps)."""

    def __init__(self, *, index: int, expected: str | None, actual: str | None) -> None:
        self.index = index
        self.expected = expected
        self.actual = actual
        if expected is None:
            what = f"asked for {actual!r} after the last recorded step"
        elif actual is None:
            what = f"ended where the record goes on with {expected!r}"
        else:
            what = f"asked for {actual!r} where the record has {expected!r}"
        super().__init__(f"replay diverged at step {index}: the run {what}")


class DurableEngineError(RunError):
    pass


class TelemetryError(ShopfloorError):
    pass


class ShopfloorSignal(Exception):
    """Base of control-flow signals; never a failure, never shown as an error."""


class ApprovalRequired(ShopfloorSignal):
    def __init__(self, tool: str, arguments: dict[str, object], approvers: list[str]) -> None:
        self.tool = tool
        self.arguments = arguments
        self.approvers = approvers
        super().__init__(f"tool {tool!r} requires approval by {', '.join(approvers) or 'an operator'}")


class RunCancelled(ShopfloorSignal):
    pass
