"""The seam between the agent loop and durability.

The loop never calls a model or a tool directly: it hands each call to a
``StepRunner`` as a named step whose result is plain JSON. The in-memory runner
just runs it; the durable runner (``shopfloor.runtime``) records it once in DBOS
and returns the recorded value on recovery; the replay runner returns a recorded
run's values without calling anything. The loop is deterministic given the step
results, so all three produce the same run.
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable
from typing import Any

from shopfloor import errors
from shopfloor.agent._records import ApprovalDecision, ApprovalRequest

__all__ = ["ApprovalPolicy", "InMemoryStepRunner", "StepRunner", "rebuild_error"]

JSON = Any
ApprovalPolicy = Callable[[ApprovalRequest], Awaitable[ApprovalDecision]]


class StepRunner(ABC):
    @abstractmethod
    async def step(self, name: str, fn: Callable[[], Awaitable[JSON]], *, effects: bool = False) -> JSON:
        """Run ``fn`` as the step ``name`` (unique within the run) and return its JSON result.

        ``effects``: the step may act outside the run (a tool's call, ``Tool.effects``). A durable
        runner makes every step before it durable before it starts, and its own record before the
        next step starts, whatever its ``durability`` defers."""

    @abstractmethod
    async def wait_for_approval(self, request: ApprovalRequest) -> ApprovalDecision:
        """Block the run (without holding a worker, where durable) until a person decides."""

    @abstractmethod
    def elapsed(self) -> float:
        """Seconds since the run started, as the run's limits should see them."""

    async def check_cancelled(self) -> bool:
        """True once the run has been cancelled; the loop then starts no further step."""
        return False


async def _deny(request: ApprovalRequest) -> ApprovalDecision:
    return ApprovalDecision(approved=False, by="shopfloor", reason="no approver in an in-memory run")


class InMemoryStepRunner(StepRunner):
    """Runs every step directly; approvals go to ``approval_policy`` (default: deny)."""

    def __init__(self, approval_policy: ApprovalPolicy | None = None) -> None:
        self._start = time.monotonic()
        self._approval_policy = approval_policy or _deny
        self.cancelled = False

    async def step(self, name: str, fn: Callable[[], Awaitable[JSON]], *, effects: bool = False) -> JSON:
        return await fn()

    async def wait_for_approval(self, request: ApprovalRequest) -> ApprovalDecision:
        return await self._approval_policy(request)

    def elapsed(self) -> float:
        return time.monotonic() - self._start

    async def check_cancelled(self) -> bool:
        return self.cancelled


def rebuild_error(raised: dict[str, str]) -> Exception:
    """The exception a recorded step raised (``{"type", "message"}``): a timeout, or one of ours by
    class name, so a recovered or replayed run raises what the original saw."""
    if raised["type"] == "TimeoutError":
        return TimeoutError(raised["message"])
    cls = getattr(errors, raised["type"], None)
    if isinstance(cls, type) and issubclass(cls, errors.ShopfloorError):
        try:
            return cls(raised["message"])
        except TypeError:  # a class whose constructor takes more than a message
            pass
    return errors.ModelError(raised["message"])
