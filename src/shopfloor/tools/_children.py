"""Child runs: a tool's call that hands parts of its work to runs of their own.

A tool given ``ToolServices.children`` starts child runs of the calling run (``Children.start``), each
a durable run of the same agent that calls the same tool's ``call_child`` once with the child's
``params``, traced on its own and listed under its parent; the tool then waits for their outcomes
(``Children.wait``). Starting is idempotent for one call: a child's id is derived from the calling
run, its step, the tool, the child's place in the call and its params, so a call that runs again
after a crash (its step was not recorded) finds the children it started before, finished or not,
and starts only those that were never started. What the runtime does is in ``runtime/_children.py``.

Children spend what their parent has left: ``start`` reads ``ctx.services.budget`` as what each child it
starts may spend (tokens) and how long it may run (seconds), and each outcome says what its child spent.
The agent loop lends a tool call its run's children with that budget filled in and the children's spend
added to the run's (``agent/_children.py``).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from shopfloor.tools._tool import ToolContext

__all__ = ["ChildCall", "ChildOutcome", "ChildStatus", "Children"]

ChildStatus = Literal["completed", "failed", "cancelled"]


@dataclass(frozen=True, kw_only=True)
class ChildCall:
    """One child run to start: what it is about and what its ``call_child`` gets."""

    #: the child run's task as listed (a sub-question): shown, not interpreted
    task: str
    #: JSON given to the tool's ``call_child`` in the child run
    params: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, kw_only=True)
class ChildOutcome:
    """How a child run ended: ``output`` is what its ``call_child`` returned (None unless completed)."""

    run_id: str
    status: ChildStatus
    output: Any = None
    error: str | None = None
    #: what the child spent (its model calls and their tokens), as its run record counts them
    input_tokens: int = 0
    output_tokens: int = 0
    model_calls: int = 0

    @property
    def ok(self) -> bool:
        return self.status == "completed"


class Children(ABC):
    """Starts child runs of a run and waits for them, durably (a run's tools get one as
    ``ToolServices.children``)."""

    @abstractmethod
    async def start(self, ctx: ToolContext, tool: str, calls: Sequence[ChildCall]) -> list[str]:
        """Start one child run per call (in parallel, as many at once as the run's limits allow; ``wait``
        starts the others as those end) whose ``tool``'s ``call_child`` gets the call's params; returns
        their ids in order. ``ctx.services.budget`` (None: the spec's limits): the tokens each child may
        spend and the seconds it may run. Children this call started before (the same step run again
        after a crash) are not started again: their ids come back as they are, with the limits they
        were started with."""

    @abstractmethod
    async def wait(self, run_ids: Sequence[str]) -> list[ChildOutcome]:
        """Wait until every one of ``run_ids`` has ended; their outcomes in order."""

    async def run(self, ctx: ToolContext, tool: str, calls: Sequence[ChildCall]) -> list[ChildOutcome]:
        """``start`` then ``wait``."""
        return await self.wait(await self.start(ctx, tool, calls))
