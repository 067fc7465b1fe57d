"""A run started in this process by ``Runtime.launch``: its id and its workflow's end, to await."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from dbos import WorkflowHandleAsync

__all__ = ["LaunchedRun"]


@dataclass(frozen=True, kw_only=True)
class LaunchedRun:
    run_id: str
    handle: WorkflowHandleAsync[dict[str, Any]] = field(repr=False)

    async def ended(self) -> BaseException | None:
        """Wait until the run's workflow has returned, from the task executing it (no polling), and
        return the exception it raised, if it raised one. Either way the run's end is in its record: the
        workflow records it before it returns or re-raises (``Runtime.get_run`` reads it). Cancelling
        this wait leaves the run going (``Runtime.cancel`` stops it)."""
        try:
            await self.handle.get_result()
        except Exception as exc:  # the run's failure, recorded by the workflow: the caller's to report
            return exc
        return None
