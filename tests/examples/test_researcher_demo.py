"""``shopfloor demo researcher`` and the researcher's plan approval, on the scripted model
(``researcher_script.py``) with the real MiniLM and the shipped corpus: each test runs a copy of the
example whose ``sources`` (the installed python3.11-doc, minutes to embed) point where nothing is, so
that it falls back to the seven pages it ships."""

from __future__ import annotations

import asyncio
import json
import re
import sys
from pathlib import Path
from typing import Any

import pytest
from suite_support import shipped_researcher
from typer.testing import CliRunner

from shopfloor.cli import app
from shopfloor.config import load_settings
from shopfloor.runtime import Runtime, compose

pytestmark = pytest.mark.slow  # the corpus is embedded on the CPU

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "researcher"
SCRIPT = "function:researcher_script:script"
cli = CliRunner()
WIDE = {"COLUMNS": "200"}  # one line per line: rich wraps at 80 columns otherwise


@pytest.fixture(autouse=True)
def _script_importable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(Path(__file__).parent))
    monkeypatch.delitem(sys.modules, "researcher_script", raising=False)


def test_the_demo_ingests_once_and_prints_the_cited_answer_the_route_and_the_run(tmp_path: Path) -> None:
    agent = str(shipped_researcher(EXAMPLE, tmp_path))
    first = cli.invoke(app, ["demo", "researcher", "--agent", agent, "--model", SCRIPT], env=WIDE)
    assert first.exit_code == 0, first.output
    out = first.stdout
    assert "python3.11-doc-not-installed is here (scripts/bootstrap.sh installs it)" in out
    assert f"ingesting {agent}/corpus into collection python-docs" in out
    added = re.search(r"(\d+) added, 0 replaced, 0 unchanged, (\d+) chunks", out)
    assert added is not None and int(added.group(1)) >= 7 and int(added.group(2)) > 0, out
    assert "answer · completed" in out and "Sources:" in out and "[1] " in out
    assert "route   shallow by rules: one thing asked: one retrieval pass" in out
    assert re.search(r"^verify  [12] sentences? kept, 1 removed by the citation verifier$", out, re.M), (
        "the script's invention"
    )
    run_id = re.search(r"^run     ([0-9a-f]{32})$", out, re.M)
    assert run_id is not None, out
    assert "ws://researcher@" in out and "/reports/what-does-the-else-clause-of-a-try-statement-do.md" in out

    again = cli.invoke(
        app,
        [
            "demo",
            "researcher",
            "How do you exit the interactive interpreter?",
            "--agent",
            agent,
            "--model",
            SCRIPT,
            "--json",
        ],
    )
    assert again.exit_code == 0, again.output
    data = json.loads(again.stdout)
    assert [(i["collection"], i["fallback"], i["added"], i["chunks"]) for i in data["ingested"]] == [
        ("python-docs", True, 0, 0)
    ], "ingested once"
    assert data["ingested"][0]["unchanged"] == int(added.group(1))
    assert data["run"]["status"] == "completed" and data["run"]["run_id"] != run_id.group(1)
    assert data["research"]["route"]["depth"] == "shallow" and data["research"]["claims"]
    assert data["run"]["output"] == data["research"]["answer"]


def _approving_copy(tmp_path: Path) -> Path:
    agent = shipped_researcher(EXAMPLE, tmp_path)
    spec = agent / "agent.yaml"
    text = spec.read_text().replace(
        "        sentences: 3\n", "        sentences: 3\n        approve_plan: true\n"
    )
    assert "approve_plan" in text
    spec.write_text(text)
    return agent


async def _waiting(runtime: Runtime, run_id: str) -> dict[str, Any]:
    for _ in range(6000):  # the corpus is ingested and embedded first: minutes on busy cores
        record = await runtime.get_run(run_id)
        if record.status == "waiting_approval" and record.approval is not None:
            return record.approval
        assert not record.done, (record.status, record.error)
        await asyncio.sleep(0.1)
    raise AssertionError(f"run {run_id} never waited for approval")


async def _research(runtime: Runtime, run_id: str) -> dict[str, Any] | None:
    for stored in [s async for s in runtime.events(run_id, follow=False)]:
        if stored.event.kind == "tool_result" and isinstance(stored.event.data.get("output"), dict):
            return dict(stored.event.data["output"])
    return None


async def test_a_deep_plan_waits_for_approval_and_a_rejection_ends_the_run(tmp_path: Path) -> None:
    agent = _approving_copy(tmp_path)
    question = (
        "Where does the name Python come from, and what is the default encoding of Python source files?"
    )
    async with Runtime(compose(load_settings())) as runtime:
        approved = await runtime.start_run(agent, question, model=SCRIPT)
        approval = await _waiting(runtime, approved)
        assert (await _research(runtime, approved)) is None, "nothing researched before the approval"
        await runtime.approve(approved, reason="good plan")
        async with asyncio.timeout(600):
            done = await runtime.wait(approved)
        research = await _research(runtime, approved)
        rejected = await runtime.start_run(agent, question, model=SCRIPT)
        await _waiting(runtime, rejected)
        await runtime.reject(rejected, reason="search the glossary instead")
        async with asyncio.timeout(600):
            ended = await runtime.wait(rejected)
        rejected_research = await _research(runtime, rejected)
    assert approval["tool"] == "python__research"
    assert approval["arguments"]["question"] == question
    proposal = approval["arguments"]["proposal"]
    assert proposal["route"]["depth"] == "deep" and proposal["route"]["by"] == "rules"
    assert proposal["sub_questions"] == [
        "Where does the name Python come from",
        "what is the default encoding of Python source files",
    ]
    assert done.status == "completed", done.error
    assert research is not None and research["plan"] == proposal["sub_questions"], "the plan approved"
    assert research["depth"] == "deep" and research["claims"], research
    assert (ended.status, ended.stop_reason) == ("failed", "rejected")
    assert ended.error is not None
    assert ended.error.endswith("proposal was rejected by local-admin: search the glossary instead")
    assert rejected_research is None, "nothing was researched"
