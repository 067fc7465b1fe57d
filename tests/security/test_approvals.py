"""Who may decide a waiting call: the spec's approvers, the approver role of the agent's team, never
the run's starter where separation of duties is on."""

from __future__ import annotations

import pytest

from shopfloor.errors import PermissionDeniedError
from shopfloor.security import ApprovalPolicy, Authorizer, Principal


def who(pid: str, *roles: str, team: str | None = "research") -> Principal:
    return Principal(id=pid, kind="person", name=pid.removeprefix("key:"), team=team, roles=roles)


def test_named_approvers_and_team_approvers_decide_others_do_not() -> None:
    policy = ApprovalPolicy(authorizer=Authorizer())
    check = {"run_id": "r1", "approvers": ["alice"], "team": "research", "started_by": "key:dev"}
    policy.check(who("key:alice"), **check)  # type: ignore[arg-type]
    policy.check(who("key:ann", "approver"), **check)  # type: ignore[arg-type]
    policy.check(who("key:root", "platform-admin", team=None), **check)  # type: ignore[arg-type]
    for outsider in (who("key:bob", "approver", team="payments"), who("key:dev2", "ai-developer")):
        with pytest.raises(PermissionDeniedError, match="'runs:approve' on runs/r1 of team research"):
            policy.check(outsider, **check)  # type: ignore[arg-type]


def test_separation_of_duties_forbids_approving_your_own_run() -> None:
    denials: list[str] = []
    authorizer = Authorizer(on_deny=lambda p, perm, res: denials.append(p.id))
    check = {"run_id": "r1", "approvers": ["alice"], "team": "research", "started_by": "key:alice"}
    ApprovalPolicy(authorizer=authorizer).check(who("key:alice"), **check)  # type: ignore[arg-type]
    strict = ApprovalPolicy(authorizer=authorizer, separation_of_duties=True)
    with pytest.raises(PermissionDeniedError, match="separation of duties"):
        strict.check(who("key:alice"), **check)  # type: ignore[arg-type]
    assert denials == ["key:alice"]
    strict.check(who("key:ann", "approver"), **check)  # type: ignore[arg-type]
