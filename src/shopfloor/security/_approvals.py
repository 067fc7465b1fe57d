"""Who may decide a call that waits for approval.

A principal named in the spec's approvers (by id or name), or one holding ``runs:approve`` on the agent's
team (the ``approver`` role bound to that team, or a global binding such as ``platform-admin``). Where the
policy asks for separation of duties, nobody decides a call of a run they started.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from shopfloor.errors import PermissionDeniedError
from shopfloor.security._authorize import Authorizer, Resource
from shopfloor.security._principal import Principal

__all__ = ["ApprovalPolicy", "approval_resource"]


def approval_resource(run_id: str, step: int) -> str:
    """How a decision's subject is named in the audit log (one per waiting call)."""
    return f"runs/{run_id}#step{step}"


@dataclass(frozen=True, kw_only=True)
class ApprovalPolicy:
    authorizer: Authorizer
    #: nobody may approve a call of a run they started
    separation_of_duties: bool = False

    def check(
        self,
        principal: Principal,
        *,
        run_id: str,
        approvers: Sequence[str],
        team: str | None,
        started_by: str,
    ) -> None:
        """Return if ``principal`` may decide the waiting call of ``run_id``, else raise
        ``PermissionDeniedError``."""
        self.check_separation(principal, run_id=run_id, started_by=started_by)
        if principal.id in approvers or principal.name in approvers:
            return
        self.authorizer.authorize(principal, "runs:approve", Resource(kind="runs", name=run_id, team=team))

    def check_separation(self, principal: Principal, *, run_id: str, started_by: str) -> None:
        """Refuse, where the policy asks for separation of duties, a decision on a run ``principal``
        started."""
        if self.separation_of_duties and started_by in (principal.id, principal.name):
            denial = f"runs/{run_id}: separation of duties forbids deciding a call of a run you started"
            if self.authorizer.on_deny is not None:
                self.authorizer.on_deny(principal, "runs:approve", Resource(kind="runs", name=run_id))
            raise PermissionDeniedError("runs:approve", principal=principal.id, resource=denial)
