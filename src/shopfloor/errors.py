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
│   │   └── ModelCapabilityError the model cannot do this (raw completion, embeddings): use another
│   ├── ModelUnavailableError   the server failed or timed out after retries (5xx, 429, network)
│   ├── ModelRequestsBlocked    a real model request was made where tests forbid it
│   ├── ModelOutputError        the model's output could not be parsed as the required JSON
│   └── ModelInstallError       an embedded model could not be installed or verified
├── ToolError
│   ├── ToolArgumentsError      arguments do not match the tool's input schema
│   ├── ToolExecutionError      the tool ran and failed
│   └── ConnectorError          an MCP server or database connector failed: unreachable, crashed,
│                               timed out, broke the protocol, or refused a query (a write, DDL)
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
│   ├── ForkStepError           a fork's step is outside its parent's record (names the range; HTTP 422)
│   ├── ProposalEditError       an approver's edit of a proposal its tool does not allow (per field; 422)
│   └── DurableEngineError      the installed DBOS is not the one the runtime was written for
├── TelemetryError              trace store or exporter failure
├── EvalError                   an evaluation cannot be found, resumed or compared (says which and why)
├── ReleaseError                a release cannot be made, found or verified (names the file, skill or digest)
│   ├── DeploymentError         a deploy, rollback, canary or feedback refused (names the agent and why)
│   └── GitOpsError             a repository cannot be fetched, read, verified or applied (commit, file:line)
├── GatewayError                the inference gateway could not answer a request
│   ├── GatewayRequestError     a request is invalid (HTTP 4xx: body, field, size, model); names the field
│   └── UpstreamError           every replica of a route and its fallbacks failed (HTTP 502, 504 on timeout)
├── AgentNotFoundError          no agent registered with the server under that name (HTTP 404)
├── RemoteCallError             the server the command line talks to (SHOPFLOOR_URL) refused or failed
└── SecurityError
    ├── AuthenticationError     no credentials, or credentials that do not verify (HTTP 401)
    ├── PermissionDeniedError   the principal lacks a permission; names it (HTTP 403)
    ├── BudgetExceededError     a budget or rate limit refuses the request; names it (HTTP 429)
    ├── SecretError             a secret is missing, or its store or key is unusable
    └── KeyNotFoundError        no API key with that id (HTTP 404)

ShopfloorSignal (BaseException subclass of nothing of ours: not an error)
├── ApprovalRequired            a tool call needs a person's approval before it runs
└── RunCancelled                the run was cancelled; stop cooperatively
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

__all__ = [
    "AgentNotFoundError",
    "ApprovalRequired",
    "AuthenticationError",
    "BudgetExceededError",
    "ConfigError",
    "ConnectorError",
    "DeploymentError",
    "DurableEngineError",
    "EvalError",
    "ForkStepError",
    "GatewayError",
    "GatewayRequestError",
    "GitOpsError",
    "KeyNotFoundError",
    "ModelCapabilityError",
    "ModelError",
    "ModelInstallError",
    "ModelOutputError",
    "ModelRequestError",
    "ModelRequestsBlocked",
    "ModelUnavailableError",
    "PermissionDeniedError",
    "ProposalEditError",
    "ReleaseError",
    "RemoteCallError",
    "ReplayDivergence",
    "RunCancelled",
    "RunError",
    "RunNotFoundError",
    "RunStateError",
    "SandboxError",
    "SandboxPolicyError",
    "SandboxUnavailableError",
    "SecretError",
    "SecurityError",
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
    "UpstreamError",
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


class ModelCapabilityError(ModelRequestError):
    """The model has no such capability (raw text completion, embeddings): call another model."""


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


class ConnectorError(ToolError):
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


class ForkStepError(RunError):
    """A fork asked for at ``step`` of a run whose record has ``steps`` steps (a fork may start at 1 to
    ``steps + 1``)."""

    def __init__(self, *, run_id: str, step: int, steps: int) -> None:
        self.step = step
        self.steps = steps
        super().__init__(
            f"step {step} is outside the record of run {run_id}: fork it at a step from 1 to {steps + 1}"
        )


class ProposalEditError(RunError):
    """An approver's edit of what a tool proposed (a research plan) that the tool does not allow.

    ``problems``: each one's ``loc`` (the path of the field, from ``proposal``), ``msg`` and ``type``, as
    FastAPI's request validation names fields (the API answers them as its 422 ``detail``)."""

    def __init__(self, problems: list[dict[str, Any]]) -> None:
        self.problems = problems
        listed = "; ".join(f"{'.'.join(map(str, p['loc']))}: {p['msg']}" for p in problems)
        super().__init__(f"the edited proposal is refused: {listed}")


class DurableEngineError(RunError):
    pass


class EvalError(ShopfloorError):
    pass


class ReleaseError(ShopfloorError):
    """A release cannot be made, found or verified (names the file, skill or digest)."""


class GitOpsError(ReleaseError):
    """The GitOps controller cannot fetch, read, verify or apply a repository's desired state."""


class DeploymentError(ReleaseError):
    """A deploy, rollback, canary, evaluation or feedback was refused (names the agent and why)."""


class TelemetryError(ShopfloorError):
    pass


class GatewayError(ShopfloorError):
    pass


class GatewayRequestError(GatewayError):
    """A request the gateway refuses before calling any upstream: HTTP ``status``, the OpenAI error
    ``code`` and the body field ``param`` it is about (``messages[2].role``), if any."""

    def __init__(self, message: str, *, status: int = 400, param: str | None = None, code: str | None = None):
        self.status = status
        self.param = param
        self.code = code
        super().__init__(message)


class UpstreamError(GatewayError):
    """An upstream failed. Raised by one attempt, ``retryable`` says whether another try (or a fallback)
    may succeed and ``retry_after`` how long the upstream asked to wait; raised to the caller, ``status`` is
    what it gets (502, 504 for a timeout, or an upstream's own 4xx with its error ``body``)."""

    def __init__(
        self,
        message: str,
        *,
        status: int = 502,
        retryable: bool = True,
        retry_after: float | None = None,
        body: bytes | None = None,
    ) -> None:
        self.status = status
        self.retryable = retryable
        self.retry_after = retry_after
        self.body = body
        super().__init__(message)


class SecurityError(ShopfloorError):
    pass


class AuthenticationError(SecurityError):
    """The request carries no credentials or ones that do not verify. The message is safe to show the
    caller: it says what kind of check failed, never the token or which part of a key matched."""


class PermissionDeniedError(SecurityError):
    """``principal`` lacks ``permission`` (e.g. ``runs:approve``) on ``resource``."""

    def __init__(self, permission: str, *, principal: str, resource: str | None = None) -> None:
        self.permission = permission
        self.principal = principal
        self.resource = resource
        on = f" on {resource}" if resource else ""
        super().__init__(f"{principal} lacks the permission {permission!r}{on}")


class BudgetExceededError(SecurityError):
    """The limit named ``limit`` (e.g. ``team:research tokens/min``) refuses the request; it may be
    retried after ``retry_after`` seconds (None: not before the period ends or the budget is raised)."""

    def __init__(self, limit: str, *, retry_after: float | None = None) -> None:
        self.limit = limit
        self.retry_after = retry_after
        when = f"; retry after {retry_after:.0f} s" if retry_after is not None else ""
        super().__init__(f"over the limit {limit}{when}")


class SecretError(SecurityError):
    pass


class KeyNotFoundError(SecurityError):
    pass


class AgentNotFoundError(ShopfloorError):
    pass


class RemoteCallError(ShopfloorError):
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
