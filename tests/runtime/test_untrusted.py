"""Approvals and run output with hostile text: never markup, the whole call shown, decided by whom."""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from pathlib import Path

import pytest
from runtime_support import Workers
from typer.testing import CliRunner
from untrusted_agent import PAYLOAD, write_untrusted_agent

from shopfloor.cli import app
from shopfloor.config import Settings
from shopfloor.errors import RunStateError
from shopfloor.runtime import Runtime, compose

pytestmark = pytest.mark.usefixtures("db_url")
cli = CliRunner()


@pytest.fixture
def hostile(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = write_untrusted_agent(tmp_path / "untrusted")
    monkeypatch.syspath_prepend(str(path))
    monkeypatch.delitem(sys.modules, "untrusted_agent", raising=False)
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(path), os.environ.get("PYTHONPATH", "")]))
    return path


def _flat(text: str) -> str:
    """The output without the line breaks the terminal width adds."""
    return "".join(text.split())


def test_markup_in_a_call_is_shown_verbatim_and_whole(hostile: Path) -> None:
    # The call waits for approval, times out (0.5 s) and the run goes on to its answer.
    result = cli.invoke(app, ["run", str(hostile), "note"])
    assert result.exit_code == 0, result.output  # the unbalanced [/magenta] crashed here before
    out = _flat(result.stdout)
    assert _flat(json.dumps(PAYLOAD)) in out  # all of it, past 100 characters, tags included
    assert "[conceal]IBANDE00ATTACKER[/conceal]" in out
    run_id = result.stdout.splitlines()[0].split()[1]

    logs = cli.invoke(app, ["runs", "logs", run_id])
    assert logs.exit_code == 0, logs.output
    assert _flat(json.dumps(PAYLOAD)) in _flat(logs.stdout)


def test_runs_show_prints_the_whole_pending_call_and_only_an_admin_decides(
    tmp_path: Path, hostile: Path, workers: Workers
) -> None:
    path = write_untrusted_agent(tmp_path / "waiting", approval_timeout=60)
    queued = cli.invoke(app, ["run", str(path), "note", "--detach", "--json"])
    assert queued.exit_code == 0, queued.output
    run_id = json.loads(queued.stdout)["run_id"]
    workers.start()
    deadline = time.monotonic() + 30
    while True:
        shown = cli.invoke(app, ["runs", "show", run_id])
        if "waiting_approval" in shown.stdout:
            break
        assert time.monotonic() < deadline, shown.output
        time.sleep(0.2)
    assert _flat(json.dumps(PAYLOAD)) in _flat(shown.stdout)
    assert "[conceal]" in shown.stdout and "an administrator" in shown.stdout

    # No approvers listed: a name on the command line is not an identity.
    refused = cli.invoke(app, ["runs", "approve", run_id, "--by", "mallory"])
    assert refused.exit_code != 0 and "lists no approvers" in str(refused.exception)
    approved = cli.invoke(app, ["runs", "approve", run_id, "--json"])  # we run as the home's owner
    assert approved.exit_code == 0, approved.output
    done = cli.invoke(app, ["runs", "logs", run_id, "--follow", "--json"])
    events = [json.loads(line) for line in done.stdout.splitlines()]
    decided = next(e for e in events if e["kind"] == "approval_decided")
    assert decided["data"]["by"] == "local-admin" and decided["data"]["approved"] is True
    assert events[-1]["data"]["status"] == "completed"


async def test_without_approvers_a_user_who_is_not_the_administrator_cannot_decide(
    rt_settings: Settings, hostile: Path
) -> None:
    path = write_untrusted_agent(hostile.parent / "slow", approval_timeout=60)
    async with Runtime(compose(rt_settings)) as runtime:
        run_id = await runtime.start_run(path, "note")
        async with asyncio.timeout(20):
            async for stored in runtime.events(run_id):
                if stored.event.kind == "approval_requested":
                    break
        outsider = Runtime(compose(rt_settings), caller="mallory", uid=4242)
        try:
            for decide in (outsider.approve, outsider.reject):
                with pytest.raises(RunStateError, match=r"only the local administrator .* you are uid 4242"):
                    await decide(run_id)
        finally:
            await outsider.close()
        await runtime.reject(run_id, reason="not this")
        async with asyncio.timeout(20):
            record = await runtime.wait(run_id)
        events = [s.event async for s in runtime.events(run_id, follow=False)]
    decided = next(e for e in events if e.kind == "approval_decided")
    assert decided.data == {"approved": False, "by": "local-admin", "reason": "not this"}
    assert record.status == "completed"
