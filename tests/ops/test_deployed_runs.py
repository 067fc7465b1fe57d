"""Runs started by agent name go to the release the deployment picks: the run record names it, a run in
flight finishes on the release it started on, and a release whose files changed is refused at run."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest

from db_support import fast_polling, fresh_database
from shopfloor.config import load_settings
from shopfloor.errors import AgentNotFoundError, ReleaseError
from shopfloor.ops.releases import DeploymentRouter, Deployments, Releases
from shopfloor.runtime import Runtime, compose
from shopfloor.skills import generate_key
from shopfloor.telemetry import TraceStore, trace_store_url


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def fast(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Fast heartbeats and polling; on PostgreSQL a database of its own (DBOS's tables in it)."""
    fast_polling(monkeypatch)
    if request.param == "sqlite":
        yield
        return
    with fresh_database(monkeypatch, "sf_ops"):
        yield


async def test_runs_by_name_start_on_the_deployed_release_and_finish_on_it(
    fast: None, agent_dir: Path
) -> None:
    services = compose(load_settings(), run_router=DeploymentRouter())
    key = generate_key("releaser", services.settings.home / "keys").private_path
    try:
        with Releases(services) as releases:
            first, _ = releases.create(agent_dir, key=key, actor="alice", version="1.0.0")
            (agent_dir / "data" / "notes.txt").write_text("second notes\n")
            second, _ = releases.create(agent_dir, key=key, actor="alice", version="2.0.0")
            deployments = Deployments(releases)
            async with Runtime(services) as runtime:
                with pytest.raises(AgentNotFoundError, match=r"no agent 'echo' is registered or deployed"):
                    await runtime.start_run(None, "hi", agent="echo")
                await asyncio.to_thread(deployments.deploy, "echo@1.0.0", actor="alice")
                queued = await runtime.start_run(None, "shout hi", agent="echo", detach=True)
                # Deployed again while the run waits in the queue: it still runs the release it started on.
                await asyncio.to_thread(deployments.deploy, "echo@2.0.0", actor="alice")
                later = await runtime.start_run(None, "shout again", agent="echo", detach=True)
                await runtime.start_executor(worker=True)
                async with asyncio.timeout(30):
                    done = await runtime.wait(queued)
                    done_later = await runtime.wait(later)
                assert done.status == "completed", done.error
                assert done.release_digest == first.agent_digest
                assert (done.release, done.track) == ("echo@1.0.0", "stable")
                assert Path(done.spec_path).parent == releases.path_of(first)
                assert done_later.status == "completed", done_later.error
                assert done_later.release_digest == second.agent_digest
                assert (done_later.release, done_later.track) == ("echo@2.0.0", "stable")
                # A path still runs what is at that path, deployed or not.
                own = await runtime.start_run(agent_dir, "shout", detach=False)
                async with asyncio.timeout(30):
                    by_path = await runtime.wait(own)
                assert by_path.release_digest == second.source_digest
                assert (by_path.release, by_path.track) == (None, None)  # not started on a release
                # Files of the materialised release edited: new runs are refused, naming the release.
                tools = releases.path_of(second) / "tools.py"
                tools.write_text(tools.read_text() + "import os  # injected\n")
                with pytest.raises(ReleaseError, match=r"release echo@2.0.0 no longer verifies"):
                    await runtime.start_run(None, "shout", agent="echo")
                # `release verify` (as a deploy does) puts the verified files back; runs start again.
                await asyncio.to_thread(releases.verify, "echo@2.0.0")
                assert "injected" not in tools.read_text()
                again = await runtime.start_run(None, "shout", agent="echo", detach=True)
                async with asyncio.timeout(30):
                    assert (await runtime.wait(again)).status == "completed"
            # (the runtime flushed its spans on closing) The run's span names the release it ran.
            traces = TraceStore(trace_store_url(services.settings))
            try:
                spans = traces.run_spans(queued)
            finally:
                traces.close()
            run_span = next(span for span in spans if span.name.startswith("invoke_agent"))
            assert run_span.attributes["gen_ai.agent.name"] == "echo"
            assert run_span.attributes["gen_ai.agent.version"] == "1.0.0"
            assert run_span.attributes["shopfloor.agent.digest"] == first.agent_digest
            assert run_span.attributes["shopfloor.release"] == "echo@1.0.0"
            assert run_span.attributes["shopfloor.release.track"] == "stable"
    finally:
        services.close()
