"""An agent's connectors reach its loop as tools through the worker's pool; without a pool, a clear error."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from shopfloor.config import Settings
from shopfloor.connectors import Connectors
from shopfloor.errors import ConfigError
from shopfloor.runtime import Runtime, compose, open_environment


def agent(tmp_path: Path) -> Path:
    db = tmp_path / "parts.db"
    with sqlite3.connect(db) as conn:
        conn.execute("CREATE TABLE parts (id INTEGER, name TEXT)")
        conn.execute("INSERT INTO parts VALUES (1, 'bolt')")
    conn.close()
    directory = tmp_path / "parts-agent"
    directory.mkdir()
    (directory / "agent.yaml").write_text(
        f"name: parts-agent\nmodel: test\nconnectors:\n  - {{name: parts, sql: {{url: 'sqlite:///{db}'}}}}\n"
    )
    return directory


async def test_connector_tools_join_the_agents_tools(tmp_path: Path, settings: Settings) -> None:
    services = compose(settings)
    pool = Connectors(secrets=None)
    env = await open_environment(
        services.load_spec(agent(tmp_path)), services, run_id="run-c", model="test", connectors=pool
    )
    try:
        assert {"parts__schema", "parts__query"} <= set(env.loop.tools)
        result = await env.loop.run("How many parts?", run_id="run-c")
        assert result.status == "completed"
        assert [step.tool for step in result.steps][:2] == ["parts__schema", "parts__query"]
        assert result.steps[0].output[0]["table"] == "parts"
    finally:
        await env.close()
        await pool.aclose()


async def test_an_agent_with_connectors_needs_a_pool(tmp_path: Path, settings: Settings) -> None:
    services = compose(settings)
    with pytest.raises(
        ConfigError, match=r"agent 'parts-agent' declares connectors \(parts\), but this worker"
    ):
        await open_environment(services.load_spec(agent(tmp_path)), services, run_id="run-d", model="test")


@pytest.mark.usefixtures("db_url")
async def test_a_durable_run_uses_the_workers_connectors_and_records_their_calls(
    tmp_path: Path, rt_settings: Settings
) -> None:
    """Through the runtime: the worker's pool (``Services.connectors``) serves the run, the connector
    calls are recorded steps, and closing the runtime stops the loop's connectors."""
    services = compose(rt_settings)
    try:
        async with Runtime(services) as runtime:
            await runtime.start_executor(worker=True)
            run_id = await runtime.start_run(agent(tmp_path), "How many parts?")
            record = await runtime.wait(run_id)
            steps = await runtime.recorded_steps(run_id)
            pool = services.connectors()
        assert record.status == "completed", record.error
        called = [s.name.rpartition(":")[2] for s in steps if s.name.startswith("tool:")]
        assert called[:2] == ["parts__schema", "parts__query"], "each connector call is a recorded step"
        assert services.connectors() is not pool, "closing the runtime closed the loop's pool"
    finally:
        services.close()


@pytest.mark.slow  # the embedding model runs on the CPU
async def test_a_docs_connector_built_from_a_workspace_is_ingested_as_the_run_starts(
    tmp_path: Path, settings: Settings
) -> None:
    """``workspace: kb@main`` with ``sources`` inside it: the run's start ingests that commit's files
    (not the host's) and its retrieve tool names the commit; a ref that does not exist stops the start."""
    from shopfloor.connectors import build_connectors
    from shopfloor.errors import ConnectorError
    from shopfloor.tools import ToolContext

    services = compose(settings)
    repo = services.workspaces()
    try:
        view = await repo.workspace("kb").open("main")
        await view.write("guide/install.md", "# Install\n\nRun the installer with the --prefix option.\n")
        await view.write("elsewhere/notes.md", "# Notes\n\nThe installer is not documented here.\n")
        head = await view.commit("guide")
    finally:
        repo.close()
    directory = tmp_path / "guide-agent"
    directory.mkdir()
    spec = (
        "name: guide-agent\nmodel: test\nconnectors:\n  - name: kb\n    tools: [retrieve, read]\n"
        "    docs: {collection: guide, workspace: REF, sources: [guide]}\n"
    )
    (directory / "agent.yaml").write_text(spec.replace("REF", "kb@main"))
    pool = build_connectors(settings, secrets=None)
    try:
        env = await open_environment(services.load_spec(directory), services, run_id="run-w", connectors=pool)
        try:
            assert {"kb__retrieve", "kb__read"} <= set(
                env.loop.tools
            ) and "kb__research" not in env.loop.tools
            ctx = ToolContext(run_id="run-w", step=1, call_id="c", idempotency_key="run-w:1")
            found = await env.loop.tools["kb__retrieve"].call({"query": "installer prefix"}, ctx)
        finally:
            await env.close()
        assert found["index"] == {"guide": {"version": 1, "commit": head}}
        assert {p["source"] for p in found["passages"]} == {"guide/install.md"}
        (directory / "agent.yaml").write_text(spec.replace("REF", "kb@gone"))
        with pytest.raises(
            ConnectorError, match="workspace kb@gone: workspace kb has no ref or commit 'gone'"
        ):
            await open_environment(services.load_spec(directory), services, run_id="run-x", connectors=pool)
    finally:
        await pool.aclose()
        services.close()
