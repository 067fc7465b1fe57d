"""The request and response bodies of the control plane's API (pydantic; requests forbid extra fields)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from shopfloor.runtime import RunRecord

__all__ = ["AgentRegister", "ApproveIn", "DecisionIn", "ForkIn", "RunCreate", "RunPage"]

_STRICT = ConfigDict(extra="forbid")


class AgentRegister(BaseModel):
    """An agent to register: a directory (or agent.yaml) on the server, or the spec's YAML itself."""

    model_config = _STRICT
    path: str | None = Field(None, min_length=1, max_length=4096, description="agent directory or file")
    spec: str | None = Field(None, min_length=1, max_length=262_144, description="agent.yaml's text")

    @model_validator(mode="after")
    def _one_source(self) -> AgentRegister:
        if (self.path is None) == (self.spec is None):
            raise ValueError("give exactly one of path (a directory on the server) or spec (the YAML)")
        return self


class RunCreate(BaseModel):
    model_config = _STRICT
    agent: str = Field(min_length=1, max_length=128, description="a registered agent's name")
    input: str = Field(min_length=1, max_length=100_000, description="the task")
    model: str | None = Field(None, min_length=1, max_length=256, description="overrides the spec's model")


class DecisionIn(BaseModel):
    model_config = _STRICT
    reason: str = Field("", max_length=4096)


class ApproveIn(DecisionIn):
    proposal: dict[str, Any] | None = Field(
        None,
        description="what the call proposed (the run's approval.proposal) as the approver edits it: only "
        "the fields in approval.editable may change, each as its JSON schema there allows; the call runs "
        "with it. A bad edit is a 422 whose detail names the field (loc)",
    )


class ForkIn(BaseModel):
    model_config = _STRICT
    step: int = Field(
        ge=1,
        le=1_000_000,
        description="the step of the run's record (1-based) from which the fork runs live; the steps "
        "before it are taken from the run's recorded outputs",
    )


class RunPage(BaseModel):
    """A page of runs (each as ``shopfloor runs show --json`` prints it), newest first."""

    runs: list[RunRecord]
    #: pass as ``cursor`` for the next (older) page; null on the last page
    next_cursor: str | None = None
