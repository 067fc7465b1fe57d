"""A ``docs`` connector over a collection built from a workspace (real MiniLM): the retrieve tool's result
and its ``retrieval`` span name the index version and the workspace commit, ``NAME__read`` returns a
passage or its document by id (bounded; a bad id is a clear error naming it), the research report cites
the version, and ``shopfloor docs add --workspace`` / ``ls`` / ``history`` show it; a spec's
``workspace:`` is checked at its file and line."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from typer.testing import CliRunner

from shopfloor.cli import app
from shopfloor.config import Settings, load_settings
from shopfloor.connectors import Secrets, ingest_workspace_sources
from shopfloor.connectors._docs import DocsConnector
from shopfloor.connectors.docs import (
    DocCollections,
    DocIndex,
    Hit,
    IngestSource,
    MiniLM,
    SearchMode,
    collection_path,
)
from shopfloor.errors import SpecError, ToolExecutionError
from shopfloor.spec import ConnectorSpec, DocsConnectorSpec, ResearchSpec, parse_spec
from shopfloor.telemetry import configure_telemetry
from shopfloor.tools import Budget, Tool, ToolContext, ToolServices
from shopfloor.workspace import Workspace, Workspaces, open_store

pytestmark = pytest.mark.slow  # the embedding model runs on the CPU

CTX = ToolContext(run_id="r", step=1, call_id="c", idempotency_key="r:1")
PAGES = {
    "guide/install.md": "# Install\n\nRun the installer with the --prefix option to choose the directory.\n",
    "guide/usage.md": "# Usage\n\nThe frobnicate command frobnicates every widget it is given.\n\n"
    + "\n\n".join(
        f"## Step {n}\n\n" + f"Step {n} polishes widget number {n} carefully. " * 60 for n in range(8)
    ),
    "scratch/notes.md": "# Notes\n\nNot part of the guide.\n",
}


async def commit(workspace: Workspace, files: dict[str, str]) -> str:
    view = await workspace.open("main")
    for path, text in files.items():
        await view.write(path, text)
    return await view.commit("guide")


@pytest.fixture
async def built(tmp_path: Path) -> AsyncIterator[tuple[DocsConnector, str, Workspaces]]:
    repo = Workspaces(open_store(f"file://{tmp_path / 'store'}"), cache_dir=tmp_path / "cache")
    head = await commit(repo.workspace("kb"), PAGES)
    docs = DocsConnectorSpec(
        collection="guide",
        workspace="kb@main",
        sources=["guide"],
        k=2,
        research=ResearchSpec(report_dir="reports"),
    )
    collections = DocCollections.under(tmp_path / "home")
    report, record = await asyncio.to_thread(
        ingest_workspace_sources, collections, docs, repo.workspace("kb")
    )
    assert (report.added, record.version, record.source.commit) == (2, 1, head)
    connector = DocsConnector(ConnectorSpec(name="kb", docs=docs), Secrets(None), collections=collections)
    yield connector, head, repo
    await connector.aclose()
    repo.close()


async def test_retrieval_names_the_index_version_and_commit_in_its_result_and_span(
    built: tuple[DocsConnector, str, Workspaces], tmp_path: Path
) -> None:
    connector, head, _ = built
    tools: dict[str, Tool] = {tool.name: tool for tool in await connector.tools()}
    assert set(tools) == {"kb__retrieve", "kb__read", "kb__research"}
    exported = InMemorySpanExporter()
    with configure_telemetry(Settings(home=tmp_path / "telemetry"), extra_exporters=[exported]):
        result = await tools["kb__retrieve"].call({"query": "installer prefix option"}, CTX)
    assert result["index"] == {"guide": {"version": 1, "commit": head}}
    assert result["passages"][0]["source"] == "guide/install.md"
    (span,) = [s for s in exported.get_finished_spans() if s.name == "retrieval guide"]
    attributes = dict(span.attributes or {})
    assert attributes["shopfloor.retrieval.index_version"] == 1
    assert attributes["shopfloor.retrieval.source_commit"] == head
    assert list(attributes["shopfloor.retrieval.ids"]) == [p["id"] for p in result["passages"]]


async def test_the_read_tool_returns_a_passage_or_its_document_by_id(
    built: tuple[DocsConnector, str, Workspaces],
) -> None:
    connector, head, _ = built
    tools: dict[str, Tool] = {tool.name: tool for tool in await connector.tools()}
    found = await tools["kb__retrieve"].call({"query": "frobnicate command widget", "k": 1}, CTX)
    passage = found["passages"][0]
    read = await tools["kb__read"].call({"id": passage["id"]}, CTX)
    assert (read["text"], read["source"], read["truncated"]) == (passage["text"], "guide/usage.md", False)
    assert read["index"] == {"collection": "guide", "version": 1, "commit": head}
    whole = await tools["kb__read"].call({"id": passage["id"], "document": True}, CTX)
    assert len(whole["chunks"]) > 3 and passage["id"] in whole["chunks"]
    assert whole["truncated"] and len(whole["text"]) == 20_000, "bounded"
    assert whole["text"].startswith(passage["text"][:40]) or passage["text"][:40] in whole["text"]
    for bad, message in (
        ("guide", r"id 'guide' is not a passage id: give one a retrieve call returned"),
        ("guide:1; DROP TABLE x", r"id 'guide:1; DROP TABLE x' is not a passage id"),
        ("other:3", r"id 'other:3': collection 'other' is not one this connector reads \(guide\)"),
        ("guide:999999", r"id 'guide:999999': no such passage in collection guide \(index version 1\)"),
    ):
        with pytest.raises(ToolExecutionError, match=message):
            await tools["kb__read"].call({"id": bad}, CTX)


class Writer:
    """The run's model at its seam: writes the first passage's first sentence, cited."""

    async def __call__(
        self, prompt: str, *, schema: dict[str, Any], system: str = "", max_tokens: int = 256
    ) -> str:
        block = prompt.split("[1] (", 1)[1].split("\n", 1)[1].split("\n\n", 1)[0]
        return json.dumps({"claims": [{"sentence": block.replace("\n", " ")[:200], "source": 1}]})


async def test_the_research_report_names_the_index_version_and_commit(
    built: tuple[DocsConnector, str, Workspaces],
) -> None:
    connector, head, repo = built
    view = await repo.workspace("out").open("main")
    tools: dict[str, Tool] = {tool.name: tool for tool in await connector.tools()}
    budget = Budget(tokens_left=100_000, seconds_left=3_600.0, step_seconds=900.0)
    services = ToolServices(ask=Writer(), workspace=view, budget=budget)
    ctx = ToolContext(run_id="r", step=1, call_id="c", idempotency_key="r:1", services=services)
    out = await tools["kb__research"].call(
        {"question": "What does the installer's prefix option choose?"}, ctx
    )
    assert out["index"] == {"guide": {"version": 1, "commit": head}}
    markdown = (await view.read(out["report"])).decode()
    sources = markdown.split("## Sources", 1)[1]
    assert f"Index: collection guide version 1, built from workspace commit `{head}`." in sources


def test_the_cli_builds_a_collection_from_a_workspace_and_shows_its_versions(tmp_path: Path) -> None:
    settings = load_settings()
    repo = Workspaces.from_settings(settings)
    try:
        head = asyncio.run(commit(repo.workspace("kb"), PAGES))
    finally:
        repo.close()
    cli = CliRunner()
    added = cli.invoke(app, ["docs", "add", "guide", "--workspace", "kb", "guide", "--json"])
    assert added.exit_code == 0, added.output
    data = json.loads(added.stdout)
    assert (data["added"], data["ingest"]["version"], data["ingest"]["source"]["commit"]) == (2, 1, head)
    again = cli.invoke(app, ["docs", "add", "guide", "--workspace", f"kb@{head[:8]}", "guide"])
    assert again.exit_code == 0 and f"index version 2 from commit {head[:12]}" in again.stdout
    (listed,) = json.loads(cli.invoke(app, ["docs", "ls", "--json"]).stdout)
    assert (listed["version"], listed["commit"], listed["documents"]) == (2, head, 2)
    assert head[:10] in cli.invoke(app, ["docs", "ls"]).stdout
    history = json.loads(cli.invoke(app, ["docs", "history", "guide", "--json"]).stdout)
    assert [(h["version"], h["unchanged"], h["documents"]) for h in history] == [(2, 2, 2), (1, 0, 2)]
    assert "digests" not in history[0]
    digests = json.loads(
        cli.invoke(app, ["docs", "history", "guide", "-n", "1", "--json", "--digests"]).stdout
    )
    assert len(digests) == 1 and sorted(digests[0]["digests"]) == ["guide/install.md", "guide/usage.md"]
    table = cli.invoke(app, ["docs", "history", "guide"]).stdout
    assert "workspace kb@main" in table and "guide" in table
    missing = cli.invoke(app, ["docs", "add", "guide", "--workspace", "kb@nope"])
    assert "workspace kb has no ref or commit 'nope'" in str(missing.exception)
    escaping = cli.invoke(app, ["docs", "add", "guide", "--workspace", "kb", "../../etc"])
    assert "escapes workspace kb" in str(escaping.exception)
    assert len(json.loads(cli.invoke(app, ["docs", "history", "guide", "--json"]).stdout)) == 2
    nothing = cli.invoke(app, ["docs", "add", "guide"])
    assert nothing.exit_code != 0 and "--workspace" in nothing.output


@pytest.mark.parametrize(
    ("docs", "message"),
    [
        ("      workspace: kb@\n", r"agent.yaml:6"),
        (
            "      workspace: kb\n      sources: [../outside]\n",
            r"agent.yaml:5.*escapes|agent.yaml:5.*inside it",
        ),
        (
            "      workspace: kb\n      sources: [guide]\n      fallback: [corpus]\n",
            r"agent.yaml:5.*no fallback",
        ),
    ],
)
def test_a_specs_workspace_is_checked_at_its_file_and_line(docs: str, message: str) -> None:
    text = f"name: helper\nconnectors:\n  - name: kb\n    docs:\n      collection: guide\n{docs}"
    with pytest.raises(SpecError, match=message):
        parse_spec(text)
    spec, _ = parse_spec(
        "name: helper\nconnectors:\n  - name: kb\n    docs:\n      collection: g\n      workspace: kb@v2\n"
    )
    assert spec.connectors[0].docs is not None and spec.connectors[0].docs.workspace == "kb@v2"


async def test_a_search_that_races_an_ingest_is_made_again_and_names_the_newer_version(
    built: tuple[DocsConnector, str, Workspaces], tmp_path: Path
) -> None:
    connector, _, _ = built
    await connector.tools()
    home = tmp_path / "home"

    class Racing(DocIndex):
        """The collection, recorded by another handle while its first search runs."""

        searches = 0

        def search(self, query: str, *, k: int = 5, mode: SearchMode = "hybrid") -> list[Hit]:
            self.searches += 1
            if self.searches == 1:
                with DocIndex(collection_path(home, "guide"), self.embedder) as other:
                    other.record(IngestSource(kind="paths", paths=("/elsewhere",)), [])
            return super().search(query, k=k, mode=mode)

    racing = Racing(collection_path(home, "guide"), MiniLM())
    connector._indexes["guide"] = racing
    passages, versions = await connector.retrieve_versioned("installer prefix", 1)
    assert versions == {"guide": {"version": 2, "commit": None}} and racing.searches == 2
    assert passages[0]["source"] == "guide/install.md"
