"""The harness end to end with a scripted agent: durable runs in fresh workspaces, broken items,
timeouts, runs listed with the others, resumption after kill -9, re-scoring without running anything."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from eval_support import AgentDir, write_suite

from shopfloor.config import load_settings
from shopfloor.evals import Harness, item_run_id, load_suite
from shopfloor.runtime import RunRecord, Runtime, compose
from shopfloor.telemetry import TraceStore, trace_store_url

ITEMS = [
    '{"id": "a", "input": "answer=paris", "expected": "paris", "tags": ["easy"]}',
    '{"id": "b", "input": "answer=rome", "expected": "lyon", "tags": ["hard"]}',
    '{"id": "c", "input": "fail", "expected": "x"}',
]


@pytest.mark.usefixtures("eval_db")
async def test_each_item_is_a_durable_run_in_a_fresh_seeded_workspace(
    agent: AgentDir, tmp_path: Path
) -> None:
    suite_path = write_suite(
        tmp_path,
        agent.path,
        ITEMS,
        scorers="  - {type: operational}\n",
        extra="repeat: 2\nconcurrency: 3\ngates:\n  - {metric: contains, min: 0.9}\n",
    )
    services = compose(load_settings())
    harness = Harness(services)
    try:
        suite, _ = load_suite(suite_path, harness.env(tmp_path))
        seen: list[tuple[str, int]] = []
        record = await harness.run(suite, progress=lambda row, done, total: seen.append((row.item_id, total)))
        rows = harness.store.items(record.eval_id)
    finally:
        harness.close()

    assert sorted(seen) == sorted((i, 6) for i in "aabbcc")
    assert {(r.item_id, r.status) for r in rows} == {("a", "done"), ("b", "done"), ("c", "broken")}
    broken = [r for r in rows if r.item_id == "c"]
    assert all(r.reason and r.reason.startswith("run failed") for r in broken), broken[0].reason
    for row in rows:
        if row.item_id != "c":
            answer = row.case["output"]  # type: ignore[index]
            assert '"before": []' in answer and '"seeded": true' in answer, (
                f"the workspace leaked or was not seeded: {answer}"
            )
    assert agent.calls() == {"paris": 2, "rome": 2, "fail": 2}
    assert all(r.run_id == item_run_id(record.eval_id, r.item_id, r.repeat) for r in rows)

    summary = record.summary
    assert summary is not None and record.status == "completed"
    assert (
        summary["metrics"]["contains"]["mean"] == 1 / 3 and summary["metrics"]["trajectory"]["mean"] == 2 / 3
    )
    assert summary["tags"]["easy"]["contains"]["mean"] == 1.0
    assert summary["gates_passed"] is False and len(summary["broken"]) == 2
    assert record.agent == "evaluated" and record.agent_digest.startswith("sha256:")

    async with Runtime(services) as runtime:
        listed = {r.run_id for r in await runtime.list_runs(agent="evaluated")}
    assert listed == {r.run_id for r in rows}, "every item's run is an ordinary run"

    operational = {m["name"]: m["value"] for m in rows[0].metrics if m["name"].startswith("operational.")}
    assert operational["operational.latency"] > 0 and operational["operational.tokens"] > 0
    assert operational["operational.ttft"] is not None, "time to first token from the run's spans"
    store = TraceStore(trace_store_url(services.settings))
    try:
        spans = store.spans()
    finally:
        store.close()
    [evaluation] = [s for s in spans if s.name == "eval smoke"]
    assert evaluation.attributes["shopfloor.eval.id"] == record.eval_id
    traced = {s.run_id for s in spans if s.trace_id == evaluation.trace_id and s.run_id}
    assert traced == {r.run_id for r in rows}, "the items' runs are traced under the evaluation's span"


async def test_a_timeout_is_recorded_and_the_evaluation_goes_on(agent: AgentDir, tmp_path: Path) -> None:
    (agent.path / "block").touch()
    items = [
        '{"id": "slow", "input": "block answer=x", "expected": "x"}',
        '{"id": "ok", "input": "answer=y", "expected": "y"}',
    ]
    suite_path = write_suite(tmp_path, agent.path, items, extra="timeout: 1.0\n")
    harness = Harness(compose(load_settings()))
    try:
        suite, _ = load_suite(suite_path, harness.env(tmp_path))
        async with asyncio.timeout(60):
            record = await harness.run(suite)
        rows = {r.item_id: r for r in harness.store.items(record.eval_id)}
    finally:
        (agent.path / "block").unlink()
        harness.close()
    assert rows["slow"].status == "broken" and "timeout" in (rows["slow"].reason or "")
    assert rows["ok"].status == "done"


async def test_items_are_awaited_from_their_runs_not_by_polling(
    agent: AgentDir, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A poll interval far longer than an item: an item waited for by polling would take a minute.
    monkeypatch.setenv("SHOPFLOOR_RUNTIME__POLL_INTERVAL", "60")
    suite_path = write_suite(tmp_path, agent.path, ITEMS[:2])
    harness = Harness(compose(load_settings()))
    try:
        suite, _ = load_suite(suite_path, harness.env(tmp_path))
        started = time.monotonic()
        async with asyncio.timeout(50):
            record = await harness.run(suite)
        elapsed = time.monotonic() - started
    finally:
        harness.close()
    assert record.status == "completed" and record.summary is not None
    assert not record.summary["broken"] and record.summary["metrics"]["contains"]["mean"] == 0.5
    assert elapsed < 50


async def test_rescoring_runs_nothing(agent: AgentDir, tmp_path: Path) -> None:
    suite_path = write_suite(tmp_path, agent.path, ITEMS[:2])
    harness = Harness(compose(load_settings()))
    try:
        suite, _ = load_suite(suite_path, harness.env(tmp_path))
        record = await harness.run(suite)
        calls = agent.calls()
        again = await harness.rescore(
            record.eval_id, scorers=[{"type": "exact", "name": "strict"}, {"type": "contains"}]
        )
    finally:
        harness.close()
    assert agent.calls() == calls, "re-scoring ran nothing"
    assert again.summary is not None and again.summary["metrics"]["strict"]["mean"] == 0.0
    assert again.summary["metrics"]["contains"] == record.summary["metrics"]["contains"]  # type: ignore[index]


def _eval_process(suite: Path, log: Path) -> subprocess.Popen[bytes]:
    code = "from shopfloor.cli import main; main()"
    with open(log, "wb") as out:
        return subprocess.Popen(
            [sys.executable, "-c", code, "eval", "run", str(suite), "--json"],
            stdout=subprocess.DEVNULL,
            stderr=out,
            env=dict(os.environ),
        )


@pytest.mark.usefixtures("eval_db")
@pytest.mark.parametrize("write_every", ["0", "3600"], ids=["written-at-once", "results-unwritten"])
async def test_kill9_then_resume_never_reruns_a_finished_item(
    agent: AgentDir, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, write_every: str
) -> None:
    """Killed while an item's run waits in a tool: the item finished before is scored from its run
    whether its result was written (``write_every`` 0) or still waited to be (an hour), and the cut run
    is recovered under its derived id; nothing that ended runs again."""
    monkeypatch.setenv("SHOPFLOOR_EVALS__WRITE_EVERY", write_every)
    (agent.path / "block").touch()
    items = [
        '{"id": "first", "input": "answer=one", "expected": "one"}',
        '{"id": "cut", "input": "block answer=two", "expected": "two"}',
        '{"id": "last", "input": "answer=three", "expected": "three"}',
    ]
    suite = write_suite(tmp_path, agent.path, items)
    log = tmp_path / "eval.log"
    proc = _eval_process(suite, log)
    try:
        deadline = time.monotonic() + 60
        while agent.calls()["blocktwo"] == 0:
            assert proc.poll() is None, log.read_text()
            assert time.monotonic() < deadline, "the evaluation never reached the blocking item"
            await asyncio.sleep(0.05)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
    (agent.path / "block").unlink()
    await asyncio.sleep(1.5)  # the killed executor's heartbeat goes stale

    services = compose(load_settings())
    harness = Harness(services)
    try:
        [record] = harness.store.list_evals()
        before = {r.item_id: r for r in harness.store.items(record.eval_id)}
        derived = {item: item_run_id(record.eval_id, item, 0) for item in before}
        async with Runtime(services) as runtime:
            runs_before = await runtime.get_runs(list(derived.values()))
        async with asyncio.timeout(60):
            record = await harness.execute(record.eval_id)
        rows = {r.item_id: r for r in harness.store.items(record.eval_id)}
    finally:
        harness.close()
    assert before["first"].status == ("done" if write_every == "0" else "pending")
    assert before["cut"].status == "pending" and before["last"].status == "pending"
    assert runs_before[derived["first"]].status == "completed"
    assert runs_before[derived["cut"]].status == "running" and derived["last"] not in runs_before
    assert {i: r.status for i, r in rows.items()} == {"first": "done", "cut": "done", "last": "done"}
    assert {i: r.run_id for i, r in rows.items()} == derived, "each item's run is the one derived from it"
    calls = agent.calls()
    assert calls["one"] == 1 and calls["three"] == 1, f"a finished item ran again: {calls}"
    assert calls["blocktwo"] == 2, "the step cut off by the kill runs again, once"
    assert json.loads(json.dumps(record.summary))["metrics"]["contains"]["mean"] == 1.0


async def test_a_run_recorded_before_a_crash_but_never_started_is_started_once_on_resume(
    agent: AgentDir, tmp_path: Path
) -> None:
    suite_path = write_suite(tmp_path, agent.path, ITEMS[:2])
    services = compose(load_settings())
    harness = Harness(services)
    try:
        suite, _ = load_suite(suite_path, harness.env(tmp_path))
        record = await harness.create(suite)
        # What a process killed between recording item a's run and starting its workflow leaves.
        async with Runtime(harness.services) as runtime:
            loaded = harness.services.load_spec(agent.path)
            orphan = RunRecord(
                run_id=item_run_id(record.eval_id, "a", 0),
                agent=loaded.spec.name,
                spec_path=str(loaded.path),
                release_digest=loaded.digest,
                caller="eval",
                status="queued",
                task="answer=paris",
                created_at=time.time(),
            )
            await asyncio.to_thread(runtime.store.create, orphan)
        async with asyncio.timeout(60):
            record = await harness.execute(record.eval_id)
        rows = {r.item_id: r for r in harness.store.items(record.eval_id)}
    finally:
        harness.close()
    assert {i: (r.status, r.run_id) for i, r in rows.items()} == {
        "a": ("done", orphan.run_id),
        "b": ("done", item_run_id(record.eval_id, "b", 0)),
    }
    assert agent.calls() == {"paris": 1, "rome": 1}


async def test_an_evaluation_begun_before_run_ids_were_derived_resumes_from_its_rows(
    agent: AgentDir, tmp_path: Path
) -> None:
    """A row of an earlier version names its run (status running, a random run id): that run is the item's."""
    suite_path = write_suite(tmp_path, agent.path, ITEMS[:2])
    harness = Harness(compose(load_settings()))
    try:
        suite, _ = load_suite(suite_path, harness.env(tmp_path))
        record = await harness.create(suite)
        async with Runtime(harness.services) as runtime:
            loaded = harness.services.load_spec(agent.path)
            launched = await runtime.launch(loaded, "answer=paris")
            await launched.ended()
        harness.store.update_item(record.eval_id, "a", 0, status="running", run_id=launched.run_id)
        async with asyncio.timeout(60):
            record = await harness.execute(record.eval_id)
        rows = {r.item_id: r for r in harness.store.items(record.eval_id)}
    finally:
        harness.close()
    assert rows["a"].status == "done" and rows["a"].run_id == launched.run_id
    assert rows["b"].status == "done" and rows["b"].run_id == item_run_id(record.eval_id, "b", 0)
    assert agent.calls() == {"paris": 1, "rome": 1}, "the item's named run was scored, not run again"


async def test_an_items_files_are_in_its_runs_own_workspace_before_it_starts(
    agent: AgentDir, tmp_path: Path
) -> None:
    files = {"notes/brief.txt": "the brief of item a"}
    items = [
        json.dumps({"id": "a", "input": "answer=paris", "expected": "paris", "files": files}),
        json.dumps({"id": "b", "input": "answer=rome", "expected": "rome"}),
    ]
    suite_path = write_suite(tmp_path, agent.path, items)
    # the same items for an agent that has no workspace: an item's files cannot reach its run
    (agent.path / "plain.yaml").write_text("name: plain\nmodel: function:eval_agent:script\n")
    plain_path = tmp_path / "plain.yaml"
    plain_path.write_text(suite_path.read_text().replace(str(agent.path), str(agent.path / "plain.yaml")))
    services = compose(load_settings())
    harness = Harness(services)
    try:
        suite, _ = load_suite(suite_path, harness.env(tmp_path))
        rows = {r.item_id: r for r in harness.store.items((await harness.run(suite)).eval_id)}
        plain, _ = load_suite(plain_path, harness.env(tmp_path))
        plain_rows = {r.item_id: r for r in harness.store.items((await harness.run(plain)).eval_id)}
    finally:
        harness.close()
    assert {item: row.status for item, row in rows.items()} == {"a": "done", "b": "done"}
    workspaces = services.workspaces()
    try:
        seeded = workspaces.workspace(f"run-{rows['a'].run_id}")
        assert await seeded.read("main", "notes/brief.txt") == b"the brief of item a"
        assert await seeded.read("main", "seed.txt") == b"seeded", "the agent's own seed is there too"
        other = workspaces.workspace(f"run-{rows['b'].run_id}")
        assert not await (await other.checkout("main")).exists("notes/brief.txt")
    finally:
        workspaces.close()
    assert plain_rows["a"].status == "broken" and plain_rows["a"].run_id is None
    assert "has files for its run's workspace" in (plain_rows["a"].reason or "")


def test_an_items_file_paths_stay_inside_the_workspace(tmp_path: Path) -> None:
    from shopfloor.errors import SpecError
    from shopfloor.evals import load_dataset

    data = tmp_path / "items.jsonl"
    data.write_text(
        json.dumps({"id": "a", "input": "x", "files": {"ok/a.txt": "fine"}})
        + "\n"
        + json.dumps({"id": "b", "input": "x", "files": {"../escape.txt": "no"}})
        + "\n"
    )
    with pytest.raises(SpecError) as info:
        load_dataset(data)
    assert "items.jsonl:2" in str(info.value) and "'../escape.txt'" in str(info.value)
    data.write_text(json.dumps({"id": "a", "input": "x", "files": {"ok/a.txt": "fine"}}) + "\n")
    (item,) = load_dataset(data).items
    assert item.files == {"ok/a.txt": "fine"} and item.to_dict()["files"] == {"ok/a.txt": "fine"}
