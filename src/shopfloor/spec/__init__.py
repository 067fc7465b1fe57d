"""Declarative agent specs (agent.yaml): models, loading with file:line errors, digests."""

from shopfloor.spec._model import (
    AgentSpec,
    Limits,
    Mount,
    Permissions,
    SandboxPolicySpec,
    SkillRef,
    ToolSpec,
    WorkspaceSpec,
)

__all__ = [
    "AgentSpec",
    "Limits",
    "Mount",
    "Permissions",
    "SandboxPolicySpec",
    "SkillRef",
    "ToolSpec",
    "WorkspaceSpec",
]
