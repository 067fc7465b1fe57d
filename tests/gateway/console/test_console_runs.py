"""Deciding and cancelling through the console, against a server hosting the run worker: the approvals
inbox shows a waiting call to its named approver (who holds no role at all) and to no one else, a decision
needs the session's CSRF token, and each button is refused to a role without its permission."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from console_support import sign_in
from gateway_support import Keys, LiveServer, wait_status

from shopfloor.config import load_settings
from shopfloor.gateway import build_server
from shopfloor.security import KeyStore, build_audit_log


@pytest.fixture
def api(fast_runtime: None, keys: Keys, live: list[LiveServer], agent_dir: Path) -> Iterator[httpx.Client]:
    live.append(LiveServer(build_server(load_settings(), worker=True)))
    with httpx.Client(
        base_url=live[-1].url, timeout=30, headers={"Authorization": f"Bearer {keys.admin}"}
    ) as c:
        c.post("/v1/agents", json={"path": str(agent_dir)}).raise_for_status()
        yield c


@pytest.mark.parametrize("fast_runtime", ["sqlite"], indirect=True)
def test_the_named_approver_decides_from_the_inbox(api: httpx.Client, keys: Keys) -> None:
    settings = load_settings()
    store = KeyStore.open(settings.db_url)
    try:
        alice_key, alice = store.create("alice", created_by="test")
    finally:
        store.close()
    run_id = api.post("/v1/runs", json={"agent": "ticker", "input": "ticks=1 tool=transfer"}).json()["run_id"]
    wait_status(api, run_id, "waiting_approval")
    base = str(api.base_url)
    with httpx.Client(base_url=base, timeout=30) as person, httpx.Client(base_url=base, timeout=30) as dev:
        csrf = sign_in(person, alice)
        # alice holds no role: no runs list, but the call waiting for her, with its arguments.
        assert person.get("/console/runs").status_code == 403
        inbox = person.get("/console/approvals").text
        assert run_id in inbox and "transfer" in inbox and 'class="approve"' in inbox
        # An ai-developer is neither named nor holds runs:approve: an empty inbox, a refused decision.
        dev_csrf = sign_in(dev, keys.developer)
        assert run_id not in dev.get("/console/approvals").text
        refused = dev.post(f"/console/runs/{run_id}/approve", data={"csrf": dev_csrf})
        assert refused.status_code == 403 and "runs:approve" in refused.text
        # Without the session's token, or from another origin, nothing is decided.
        assert person.post(f"/console/runs/{run_id}/approve", data={"reason": "x"}).status_code == 403
        cross = person.post(
            f"/console/runs/{run_id}/approve", data={"csrf": csrf}, headers={"Origin": "https://evil.example"}
        )
        assert cross.status_code == 403
        assert api.get(f"/v1/runs/{run_id}").json()["status"] == "waiting_approval"
        decided = person.post(
            f"/console/runs/{run_id}/approve",
            data={"csrf": csrf, "reason": "fine by me", "back": "/console/approvals"},
        )
        assert decided.status_code == 303 and decided.headers["location"] == "/console/approvals"
        wait_status(api, run_id, "completed")
        assert run_id not in person.get("/console/approvals").text
        # The run page's script follows the run's events (SSE); for an ended run the stream ends.
        assert person.get(f"/console/runs/{run_id}/events").status_code == 403  # alice: no runs:read
        with dev.stream("GET", f"/console/runs/{run_id}/events") as stream:
            assert stream.headers["content-type"].startswith("text/event-stream")
            kinds = [line.split(": ", 1)[1] for line in stream.iter_lines() if line.startswith("event: ")]
        assert kinds[0] == "run_started" and kinds[-1] == "run_finished" and "approval_decided" in kinds
        resumed = dev.get(f"/console/runs/{run_id}/events", headers={"Last-Event-ID": "2"}).text
        assert "id: 2\n" not in resumed and "id: 3\n" in resumed
    with build_audit_log(settings) as audit:
        entry = audit.latest("approval.decided", f"runs/{run_id}")
    assert entry is not None and entry.actor == f"key:{alice_key.key_id}"
    assert entry.details.get("reason") == "fine by me"


@pytest.mark.parametrize("fast_runtime", ["sqlite"], indirect=True)
def test_cancel_needs_its_permission(api: httpx.Client, keys: Keys) -> None:
    run_id = api.post("/v1/runs", json={"agent": "ticker", "input": "ticks=1 tool=transfer"}).json()["run_id"]
    wait_status(api, run_id, "waiting_approval")
    base = str(api.base_url)
    with httpx.Client(base_url=base, timeout=30) as viewer, httpx.Client(base_url=base, timeout=30) as dev:
        viewer_csrf = sign_in(viewer, keys.viewer)
        page = viewer.get(f"/console/runs/{run_id}").text
        assert "Cancel run" not in page and 'class="approve"' not in page
        assert viewer.post(f"/console/runs/{run_id}/cancel", data={"csrf": viewer_csrf}).status_code == 403
        dev_csrf = sign_in(dev, keys.developer)
        assert "Cancel run" in dev.get(f"/console/runs/{run_id}").text
        cancelled = dev.post(f"/console/runs/{run_id}/cancel", data={"csrf": dev_csrf})
        assert cancelled.status_code == 303 and cancelled.headers["location"] == f"/console/runs/{run_id}"
    assert api.get(f"/v1/runs/{run_id}").json()["status"] == "cancelled"


@pytest.mark.parametrize("fast_runtime", ["sqlite"], indirect=True)
def test_replay_and_fork_an_ended_run(api: httpx.Client, keys: Keys) -> None:
    run_id = api.post("/v1/runs", json={"agent": "ticker", "input": "ticks=2"}).json()["run_id"]
    waiting = {"agent": "ticker", "input": "ticks=1 tool=transfer"}
    running = api.post("/v1/runs", json=waiting).json()["run_id"]
    wait_status(api, run_id, "completed")
    wait_status(api, running, "waiting_approval")
    base = str(api.base_url)
    with httpx.Client(base_url=base, timeout=60) as viewer, httpx.Client(base_url=base, timeout=60) as dev:
        viewer_csrf = sign_in(viewer, keys.viewer)
        page = viewer.get(f"/console/runs/{run_id}").text
        assert 'class="replay"' not in page and 'class="fork"' not in page  # a viewer holds no runs:start
        refused = viewer.post(f"/console/runs/{run_id}/replay", data={"csrf": viewer_csrf})
        assert refused.status_code == 403 and "runs:start" in refused.text
        csrf = sign_in(dev, keys.developer)
        page = dev.get(f"/console/runs/{run_id}").text
        assert 'class="replay"' in page and '<option value="4">4: tool:2:tick</option>' in page
        assert 'class="replay"' not in dev.get(f"/console/runs/{running}").text  # not ended: no buttons
        assert dev.post(f"/console/runs/{running}/replay", data={"csrf": csrf}).status_code == 409
        assert dev.post(f"/console/runs/{run_id}/replay", data={}).status_code == 403  # no CSRF token
        # Replay: every recorded step and the answer come out the same; nothing is called.
        replayed = dev.post(f"/console/runs/{run_id}/replay", data={"csrf": csrf})
        assert replayed.status_code == 200, replayed.text
        assert 'status-completed">same</span>' in replayed.text
        assert replayed.text.count('class="check-same"') == 5  # two model and tool calls, the answer
        assert "done after 2 ticks" in replayed.text
        # Fork at the third step: a durable run of the worker (the first two steps the run's recorded
        # outputs, live from the third); the browser is sent to its page.
        forked = dev.post(f"/console/runs/{run_id}/fork", data={"csrf": csrf, "step": "3"})
        assert forked.status_code == 303, forked.text
        fork_id = forked.headers["location"].rpartition("/")[2]
        assert forked.headers["location"] == f"/console/runs/{fork_id}" and fork_id != run_id
        listed = wait_status(api, fork_id, "completed")
        assert listed["output"] == "done after 2 ticks" and listed["caller"].startswith("key:")
        assert (listed["parent_run_id"], listed["fork_step"]) == (run_id, 3)
        page = dev.get(f"/console/runs/{fork_id}").text
        assert '<dd id="fork-of"><a href="/console/runs/' + run_id + '">' in page and "at step 3" in page
        assert f'data-run="{fork_id}"' in dev.get("/console/runs/rows").text
        outside = dev.post(f"/console/runs/{run_id}/fork", data={"csrf": csrf, "step": "99"})
        assert outside.status_code == 422 and "from 1 to 6" in outside.text
        for step in ("", "x", "²", "1" * 12):  # not a step number: refused before anything is looked up
            wrong = dev.post(f"/console/runs/{run_id}/fork", data={"csrf": csrf, "step": step})
            assert wrong.status_code == 400 and "its number" in wrong.text
        assert dev.post(f"/console/runs/{running}/fork", data={"csrf": csrf, "step": "1"}).status_code == 409
        assert (
            viewer.post(f"/console/runs/{run_id}/fork", data={"csrf": viewer_csrf, "step": "1"}).status_code
            == 403
        )


@pytest.mark.parametrize("fast_runtime", ["sqlite"], indirect=True)
def test_the_runs_list_stream_reports_a_new_run_and_its_changes(api: httpx.Client, keys: Keys) -> None:
    base = str(api.base_url)
    with httpx.Client(base_url=base, timeout=60) as dev:
        sign_in(dev, keys.developer)
        with dev.stream("GET", "/console/runs/stream", params={"agent": "ticker"}) as stream:
            assert stream.status_code == 200
            assert stream.headers["content-type"].startswith("text/event-stream")
            lines = stream.iter_lines()
            assert next(lines) == "retry: 2000"
            run_id = api.post("/v1/runs", json={"agent": "ticker", "input": "ticks=1"}).json()["run_id"]
            # The list changes (the run added, then running, then completed): an event each time, until
            # the run has ended in the store, which the rows fetched next then show.
            events = 0
            for line in lines:
                if line.startswith("event: "):
                    assert line == "event: runs"
                    events += 1
                    if api.get(f"/v1/runs/{run_id}").json()["status"] == "completed":
                        break
            assert events >= 1
        assert "completed" in dev.get("/console/runs/rows", params={"agent": "ticker"}).text
    # Signed out, the stream is not opened (the script then signs in again).
    with httpx.Client(base_url=base, timeout=30) as anonymous:
        assert anonymous.get("/console/runs/stream").status_code == 401
