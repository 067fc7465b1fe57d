"""The researcher's deep path in child runs: each sub-question researched in a durable run of its own,
under the parent, on its own branch of the workspace; the shallow path stays in the parent. On the
scripted model (``researcher_script.py``) with the real MiniLM and the shipped 7-page corpus
(``researcher_on_fallback``)."""

from __future__ import annotations

import asyncio
import re
import sys
from pathlib import Path
from typing import Any

import pytest
from researcher_support import researcher_on_fallback

from shopfloor.config import load_settings
from shopfloor.runtime import Runtime, compose

pytestmark = pytest.mark.slow  # the corpus is embedded on the CPU

SCRIPT = "function:researcher_script:script"
DEEP = "Where does the name Python come from, and what is the default encoding of Python source files?"
SHALLOW = "What does the else clause of a try statement do?"


@pytest.fixture(autouse=True)
def _script_importable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(Path(__file__).parent))
    monkeypatch.delitem(sys.modules, "researcher_script", raising=False)


async def _research(runtime: Runtime, run_id: str) -> dict[str, Any]:
    for stored in [s async for s in runtime.events(run_id, follow=False)]:
        if stored.event.kind == "tool_result" and isinstance(stored.event.data.get("output"), dict):
            return dict(stored.event.data["output"])
    raise AssertionError(f"run {run_id} has no research result")


async def test_a_deep_question_researches_each_sub_question_in_a_child_run_on_its_own_branch(
    tmp_path: Path,
) -> None:
    agent = researcher_on_fallback(tmp_path)
    services = compose(load_settings())
    try:
        async with services.runtime() as runtime:
            deep = await runtime.start_run(agent, DEEP, model=SCRIPT)
            async with asyncio.timeout(900):
                done = await runtime.wait(deep)
            research = await _research(runtime, deep)
            children = await runtime.children(deep)
            shallow = await runtime.start_run(agent, SHALLOW, model=SCRIPT)
            async with asyncio.timeout(600):
                shallow_done = await runtime.wait(shallow)
            shallow_research = await _research(runtime, shallow)
            shallow_children = await runtime.children(shallow)
        workspace = services.workspaces().workspace("researcher")
        refs = await workspace.refs()
        notes = [
            await workspace.read(
                refs[f"child-{child.run_id}"], f"reports/sub-questions/{_slug(child.task)}.md"
            )
            for child in children
        ]
        main_files = set(await workspace.files("main"))
    finally:
        services.close()

    assert done.status == "completed", done.error
    plan = ["Where does the name Python come from", "what is the default encoding of Python source files"]
    assert research["depth"] == "deep" and research["plan"] == plan
    assert [c["sub_question"] for c in research["children"]] == plan
    assert [c["status"] for c in research["children"]] == ["completed", "completed"]
    assert [c.run_id for c in children] == [c["run_id"] for c in research["children"]]
    for child, sub, note in zip(children, plan, notes, strict=True):
        assert (child.task, child.parent_run_id, child.status) == (sub, deep, "completed")
        assert child.model == SCRIPT, "the child asks the parent's model"
        assert child.child_params is not None and child.child_params["tool"] == "python__research"
        assert child.child_params["workspace"] == "researcher"
        assert child.model_calls == 1, "its writer; the parent planned"
        # its own branch, made from the parent's commit, holds what it found
        assert refs[f"child-{child.run_id}"] == child.workspace_commit
        assert note.decode().startswith(f"# {sub}\n") and b"## Passages" in note
    assert not any(path.startswith("reports/sub-questions/") for path in main_files), "children write apart"
    # The parent verified the children's sentences against all their passages: cited, invention removed.
    assert research["claims"] and research["sources"]
    assert any("BBC" in removed["sentence"] for removed in research["removed"])
    cited_docs = {source["doc"] for source in research["sources"]}
    assert len(cited_docs) >= 1 and re.search(r"\[1\]", research["answer"])
    # Shallow: one retrieval pass in the parent, no child runs.
    assert shallow_done.status == "completed", shallow_done.error
    assert shallow_research["depth"] == "shallow" and "children" not in shallow_research
    assert shallow_children == []


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:60]
