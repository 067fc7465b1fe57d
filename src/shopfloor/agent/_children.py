"""A tool call's child runs, counted against its run's limits.

The loop lends each tool call its run's ``Children`` through a ``CallChildren``. Children spend what
their parent has left: a batch started together shares the tokens the run has left at that moment
(less what the call's earlier children may still spend), each child getting an equal part, so the
children of a run never spend more than the run could itself; each may run until the run's wall time
or the calling step's timeout runs out, whichever comes first (a child never outlives the call waiting
for it). What a child spent is added to the run's usage when the call has waited for it, once per
child, so the call's recorded step carries it (``AgentLoop._tool_step``): a recovery replays it and
does not count it again, and a call run again after a crash waits for the same children and counts
what they spent, once.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Sequence

from shopfloor.tools import Budget, ChildCall, ChildOutcome, Children, ToolContext

__all__ = ["CallChildren"]


class CallChildren(Children):
    """``inner`` (the run's children) as one tool call is lent them. ``budget``: what the run had left as
    the call started; ``spent``: the tokens the call has spent since (its questions and the children it
    waited for); ``add``: adds a child's spend to the run's usage."""

    def __init__(
        self,
        inner: Children,
        *,
        budget: Budget,
        spent: Callable[[], int],
        add: Callable[[ChildOutcome], None],
    ) -> None:
        self.inner = inner
        self.budget = budget
        self._started = time.monotonic()
        self._spent = spent
        self._add = add
        #: the tokens each child started and not yet waited for may still spend
        self._reserved: dict[str, int] = {}
        self._counted: set[str] = set()

    def share(self, children: int) -> Budget:
        """What each of ``children`` started now may spend, and how long it may run."""
        since = time.monotonic() - self._started
        left = self.budget.tokens_left - self._spent() - sum(self._reserved.values())
        step_left = max(0.0, self.budget.step_seconds - since)
        return Budget(
            tokens_left=max(0, left) // max(1, children),
            seconds_left=min(max(0.0, self.budget.seconds_left - since), step_left),
            step_seconds=step_left,
        )

    async def start(self, ctx: ToolContext, tool: str, calls: Sequence[ChildCall]) -> list[str]:
        share = self.share(len(calls))
        lent = dataclasses.replace(ctx, services=dataclasses.replace(ctx.services, budget=share))
        run_ids = await self.inner.start(lent, tool, calls)
        for run_id in run_ids:
            if run_id not in self._counted:
                self._reserved.setdefault(run_id, share.tokens_left)
        return run_ids

    async def wait(self, run_ids: Sequence[str]) -> list[ChildOutcome]:
        outcomes = await self.inner.wait(run_ids)
        for outcome in outcomes:
            if outcome.run_id not in self._counted:
                self._counted.add(outcome.run_id)
                self._reserved.pop(outcome.run_id, None)
                self._add(outcome)
        return outcomes
