"""The seam between a request and its budgets: ``Admission`` admits a request before its upstream call
and settles what it used afterwards.

The inference gateway and the runtime call it; the budget and rate-limit implementations (in process,
persisted to the database, or shared through Redis) implement it. A request is admitted once and settled
once, however many retries and fallbacks it takes, so a limit counts what the caller asked for, not how
hard the gateway tried.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass

from shopfloor.security._principal import Principal

__all__ = ["Admission", "Grant", "Usage", "UsageRequest"]


@dataclass(frozen=True, kw_only=True)
class UsageRequest:
    """What a request may use, known before it is sent."""

    principal: Principal
    #: the model route (``local:qwen2.5-coder-0.5b``, an alias, ``agent/NAME``)
    route: str
    #: the agent a run's request is made for, if any
    agent: str | None = None
    #: an upper bound of the tokens it may use (prompt + ``max_tokens``), for token budgets
    estimated_tokens: int = 0


@dataclass(frozen=True, kw_only=True)
class Usage:
    """What a request used, known when it ends (for a stream: at its last chunk, or when it was cut)."""

    tokens_in: int = 0
    tokens_out: int = 0
    cost: float = 0.0


class Grant(ABC):
    """An admitted request's claim on its budgets; settled exactly once."""

    @abstractmethod
    def settle(self, usage: Usage) -> None:
        """Replace the reservation by what was used (a failed request settles ``Usage()``)."""


class Admission(ABC):
    """Admits requests against budgets and rate limits."""

    @abstractmethod
    def admit(self, request: UsageRequest) -> Grant:
        """Reserve ``request``'s use, or raise ``BudgetExceededError`` naming the limit it would exceed.
        Exact under concurrency: N concurrent requests against a limit that admits K admit exactly K."""

    def start_run(self, request: UsageRequest, run_id: str) -> None:  # noqa: B027  (limits no runs)
        """Hold a slot of every concurrent-run limit that applies to ``request`` for run ``run_id`` until
        ``end_run``, or raise ``BudgetExceededError`` naming the limit that is full. Exact under
        concurrency, like ``admit``; holding again for the same run takes nothing more. An admission
        that limits no concurrent runs admits every run. The slots are leased to this process, which
        renews them until ``queue_run`` or ``end_run``: if it dies first, they lapse."""

    def queue_run(self, run_id: str) -> None:  # noqa: B027
        """Run ``run_id`` is about to go to the durable queue, where no process renews it: its slots are
        held until an executor takes it (``resume_run``) or for a day, and this process renews them no
        more."""

    def resume_run(self, run_id: str) -> None:  # noqa: B027
        """This process executes run ``run_id`` (from its start, or recovered after its executor died):
        its slots are leased to this process and renewed until ``end_run``. A slot whose lease lapsed
        meanwhile is taken back even over its maximum (the run was admitted; it counts)."""

    def end_run(self, run_id: str) -> None:  # noqa: B027
        """Give back the slots run ``run_id`` holds, at once; safe to call again, and for a run that holds
        none."""
