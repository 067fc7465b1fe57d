"""Approvals decided by authenticated principals: only the right people, recorded with the call's arguments
in the run and the audit log, applied once."""

from __future__ import annotations

import asyncio

import pytest
from runtime_support import AgentDir

from shopfloor.config import Settings
from shopfloor.errors import PermissionDeniedError, RunStateError
from shopfloor.runtime import Runtime, compose
from shopfloor.security import Principal, approval_resource

pytestmark = pytest.mark.usefixtures("db_url")


def _person(pid: str, *roles: str, team: str | None = "research") -> Principal:
    return Principal(
        id=pid, kind="person", name=pid.removeprefix("key:"), team=team, roles=roles, method="api-key"
    )


async def _wait_for_approval(runtime: Runtime, run_id: str) -> None:
    """Until the run's status says it waits (the event may be seen a moment before the status is written)."""
    for _ in range(400):  # 20 s
        if (await runtime.get_run(run_id)).status == "waiting_approval":
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"run {run_id} never waited for approval")


async def test_team_approver_decides_once_and_is_audited(rt_settings: Settings, agent: AgentDir) -> None:
    spec = agent.path / "agent.yaml"
    spec.write_text(
        spec.read_text().replace("  approvers: [alice]", "  approvers: [alice]\n  team: research")
    )
    async with Runtime(compose(rt_settings)) as runtime:
        run_id = await runtime.start_run(agent.path, "ticks=1 tool=transfer")
        await _wait_for_approval(runtime, run_id)
        for outsider in (_person("key:bob", "approver", team="payments"), _person("key:v", "viewer")):
            with pytest.raises(PermissionDeniedError, match="runs:approve"):
                await runtime.approve(run_id, principal=outsider)
        ann = _person("key:ann", "approver")
        await runtime.approve(run_id, principal=ann, reason="ok")
        await runtime.approve(run_id, principal=ann, reason="ok")  # a retry: applied once
        # refused whether the run still waits (the audit names the decision) or has moved on
        with pytest.raises(RunStateError, match="already approved by key:ann"):
            await runtime.reject(run_id, principal=_person("key:root", "platform-admin"))
        async with asyncio.timeout(20):
            record = await runtime.wait(run_id)
        # after the run moved on: the same decision again is answered as applied, another one is refused
        await runtime.approve(run_id, principal=ann, reason="ok")
        with pytest.raises(RunStateError, match="already approved by key:ann"):
            await runtime.reject(run_id, principal=ann)
        events = [s.event async for s in runtime.events(run_id, follow=False)]
        audit = runtime.governance.audit
        entry = audit.find("approval.decided", approval_resource(run_id, 1))
        denied = audit.entries(kind="permission.denied")
        verified = audit.verify()
    assert record.status == "completed"
    assert agent.calls()[f"transfer:{run_id}:1"] == 1
    decided = [e for e in events if e.kind == "approval_decided"]
    assert [e.data for e in decided] == [{"approved": True, "by": "key:ann", "reason": "ok"}]
    assert entry is not None and entry.actor == "key:ann"
    assert entry.details["arguments"] == {"amount": 10} and entry.details["tool"] == "transfer"
    assert entry.details["team"] == "research" and entry.details["method"] == "api-key"
    assert [e.actor for e in denied] == ["key:bob", "key:v"]
    assert verified.ok


async def test_separation_of_duties_in_local_mode(
    db_url: str, rt_settings: Settings, agent: AgentDir
) -> None:
    settings = rt_settings.model_copy(
        update={"security": rt_settings.security.model_copy(update={"separation_of_duties": True})}
    )
    async with Runtime(compose(settings), caller="alice") as runtime:
        run_id = await runtime.start_run(agent.path, "ticks=1 tool=transfer")
        await _wait_for_approval(runtime, run_id)
        with pytest.raises(PermissionDeniedError, match="separation of duties"):
            await runtime.approve(run_id, by="alice")
        await runtime.reject(run_id, principal=_person("key:carol", "platform-admin", team=None), reason="no")
        async with asyncio.timeout(20):
            record = await runtime.wait(run_id)
    assert record.status == "completed"
    assert agent.calls()[f"transfer:{run_id}:1"] == 0


async def test_a_decision_audited_but_not_sent_is_sent_on_retry(
    rt_settings: Settings, agent: AgentDir
) -> None:
    # a crash between the audit append and the send leaves the entry alone: the retry sends it, once
    async with Runtime(compose(rt_settings)) as runtime:
        run_id = await runtime.start_run(agent.path, "ticks=1 tool=transfer")
        await _wait_for_approval(runtime, run_id)
        runtime.governance.audit.append(
            "approval.decided",
            actor="alice",
            resource=approval_resource(run_id, 1),
            details={"approved": True, "by": "alice", "reason": "before the crash"},
        )
        await runtime.approve(run_id, by="alice", reason="retried")
        async with asyncio.timeout(20):
            record = await runtime.wait(run_id)
        events = [s.event async for s in runtime.events(run_id, follow=False)]
        decisions = runtime.governance.audit.entries(kind="approval.decided")
    assert record.status == "completed" and agent.calls()[f"transfer:{run_id}:1"] == 1
    decided = [e.data for e in events if e.kind == "approval_decided"]
    assert decided == [{"approved": True, "by": "alice", "reason": "before the crash"}]
    assert len(decisions) == 1
