"""The declarative agent spec (``agent.yaml``) as pydantic models.

Every model forbids unknown keys, so a typo is an error, not a silent default.
"""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import Field, field_validator

from shopfloor.spec._connectors import ConnectorSpec
from shopfloor.spec._fields import Int, Number, StrictModel

__all__ = [
    "AgentSpec",
    "GuardrailSpec",
    "Isolation",
    "Limits",
    "Mount",
    "Permissions",
    "SandboxPolicySpec",
    "SkillRef",
    "ToolSpec",
    "WorkspaceSpec",
]

_NAME = re.compile(r"^[a-z0-9]([a-z0-9-]{0,62}[a-z0-9])?\Z")
_TOOL_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]{0,63}\Z")
_SOURCE = re.compile(r"^(builtin:[A-Za-z0-9_.-]+|[^:\s]+\.py:[A-Za-z_]\w*|[A-Za-z_][\w.]*:[A-Za-z_][\w.]*)\Z")
_SIZE = re.compile(r"^\d+(\.\d+)?[KMGT]?i?B?\Z", re.IGNORECASE)


#: the sandbox backends an agent may ask for: ``auto`` plus every backend ``shopfloor.sandbox``
#: registers (the sandbox layer reads this type; a test checks the two agree)
Isolation = Literal["auto", "bwrap", "landlock", "gvisor", "none"]


class Limits(StrictModel):
    max_steps: Int = Field(20, ge=1, description="model turns before the run stops")
    max_tokens: Int = Field(50_000, ge=1, description="input + output tokens over the whole run")
    wall_time: Number = Field(600.0, gt=0, description="seconds from start to finish")
    step_timeout: Number = Field(30.0, gt=0, description="seconds one model or tool step may take")
    max_retries: Int = Field(2, ge=0, description="re-asks after invalid tool arguments, per step")
    max_output_tokens: Int = Field(512, ge=16, description="tokens one model reply may take")
    max_parallel_children: Int = Field(
        8, ge=1, le=64, description="child runs of the run executing at once (the others wait their turn)"
    )


class SandboxPolicySpec(StrictModel):
    isolation: Isolation = "auto"
    network: list[str] | Literal["none"] = "none"
    memory: str = "1G"
    cpus: Number = Field(1.0, gt=0)
    pids: Int = Field(128, ge=1)
    timeout: Number = Field(30.0, gt=0)
    disk: str = "1G"

    @field_validator("memory", "disk")
    @classmethod
    def _size(cls, value: str) -> str:
        if not _SIZE.match(value):
            raise ValueError(f"expected a size such as 256M or 1G, got {value!r}")
        return value


class Mount(StrictModel):
    path: str = Field(description="where it appears, relative to /workspace")
    source: str = Field(description="a host directory or an s3:// prefix")
    read_only: Literal[True] = True


class WorkspaceSpec(StrictModel):
    name: str | None = Field(None, description="a named workspace persists across runs")
    start_from: Literal["last", "empty"] = "last"
    seed: list[str] = Field(default_factory=list, description="files or dirs copied in at first run")
    mounts: list[Mount] = Field(default_factory=list)
    max_bytes: Int | None = Field(None, ge=1)
    max_files: Int | None = Field(None, ge=1)
    max_file_bytes: Int | None = Field(None, ge=1)


class Permissions(StrictModel):
    workspace: Literal["read-write", "read-only", "none"] = "read-write"
    approvers: list[str] = Field(default_factory=list)
    #: the team owning the agent: holders of ``approver`` for it may decide its calls, its runs are its
    team: str | None = Field(None, description="the team that owns this agent (role bindings are per team)")
    #: secrets (``shopfloor secrets set NAME``) its skills and tools get as environment variables NAME
    secrets: list[str] = Field(default_factory=list)


class GuardrailSpec(StrictModel):
    name: str = Field(description="pii, deny-topics, prompt-injection, or another registered guardrail")
    #: the guardrail's own options (pii: block, kinds; deny-topics: topics, stages)
    options: dict[str, Any] = Field(default_factory=dict)


class ToolSpec(StrictModel):
    name: str
    source: str = Field(description="builtin:NAME, FILE.py:ATTR (relative to the spec) or module:attr")
    description: str | None = None
    requires_approval: bool = False
    approval_timeout: Number | None = Field(None, gt=0)
    #: false: a call only computes from its arguments (a function source), so with ``[runtime]
    #: durability = "batched"`` its step is committed behind the run and a crash may run it again;
    #: unset: the tool's own (a function: true; ``builtin:calculator``: false)
    effects: bool | None = None

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not _TOOL_NAME.match(value):
            raise ValueError("expected 1-64 letters, digits, '_' or '-', starting with a letter or '_'")
        return value

    @field_validator("source")
    @classmethod
    def _source(cls, value: str) -> str:
        if not _SOURCE.match(value):
            raise ValueError(f"expected builtin:NAME, FILE.py:FUNCTION or module:attribute, got {value!r}")
        return value


class SkillRef(StrictModel):
    ref: str = Field(description="name@version, name@sha256:DIGEST, or a path to a skill directory")
    requires_approval: bool = False
    approval_timeout: Number | None = Field(None, gt=0)


class AgentSpec(StrictModel):
    name: str
    version: str = "0.1.0"
    description: str = ""
    instructions: str = ""
    model: str = "local:qwen2.5-coder-0.5b"
    #: how the model chooses its next action: ``one_shot`` (tool and arguments in one JSON reply),
    #: ``two_phase`` (the tool first from an enum, then its arguments: better for small models),
    #: ``native`` (the server's tool calling); ``auto`` picks native where the model supports it.
    decision: Literal["auto", "one_shot", "two_phase", "native"] = "auto"
    #: ``model``: the model writes the final answer. ``tool_result``: a tool result that carries an
    #: ``answer`` summary ends the run with that text, figures and all (small models otherwise
    #: re-generate the figures, or call the tool again instead of answering).
    answer: Literal["model", "tool_result"] = "model"
    skills: list[SkillRef] = Field(default_factory=list)
    tools: list[ToolSpec] = Field(default_factory=list)
    #: MCP servers and databases whose tools the agent may use (``shopfloor.connectors``)
    connectors: list[ConnectorSpec] = Field(default_factory=list)
    limits: Limits = Field(default_factory=Limits)  # type: ignore[arg-type]
    sandbox: SandboxPolicySpec = Field(default_factory=SandboxPolicySpec)  # type: ignore[arg-type]
    workspace: WorkspaceSpec = Field(default_factory=WorkspaceSpec)  # type: ignore[arg-type]
    permissions: Permissions = Field(default_factory=Permissions)  # type: ignore[arg-type]
    #: checks on the task, the model's actions and tool results, in order (pass, redact or block)
    guardrails: list[GuardrailSpec] = Field(default_factory=list)

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not _NAME.match(value):
            raise ValueError(
                "expected 1-64 lowercase letters, digits and hyphens, not starting or ending with '-'"
            )
        return value

    @field_validator("tools")
    @classmethod
    def _unique_tools(cls, value: list[ToolSpec]) -> list[ToolSpec]:
        names = [tool.name for tool in value]
        repeated = sorted({name for name in names if names.count(name) > 1})
        if repeated:
            raise ValueError(f"each tool needs its own name; used more than once: {', '.join(repeated)}")
        return value

    @field_validator("connectors")
    @classmethod
    def _unique_connectors(cls, value: list[ConnectorSpec]) -> list[ConnectorSpec]:
        names = [connector.name for connector in value]
        repeated = sorted({name for name in names if names.count(name) > 1})
        if repeated:
            raise ValueError(f"each connector needs its own name; used more than once: {', '.join(repeated)}")
        return value

    @field_validator("skills", mode="before")
    @classmethod
    def _skill_shorthand(cls, value: object) -> object:
        if isinstance(value, list):
            return [{"ref": item} if isinstance(item, str) else item for item in value]
        return value
