"""The researcher's evaluation: the dataset's shape, its own scorers on recorded outputs, and (slow) two
of its questions through the harness as durable runs of the example agent with a scripted model: the
corpus is ingested as the runs start, retrieval finds the gold pages, the router matches the labels and
the verifier removes the invention, so every citation left holds its sentence."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path
from typing import Any

import pytest
from examples.researcher.evals.scoring import citations, correct, routing
from researcher_support import researcher_on_fallback
from suite_support import by_id, run_suite, subset_suite

from shopfloor.config import Settings
from shopfloor.evals import Case, Item, ScorerEnv, ToolCallRecord, load_suite

SUITE = Path(__file__).resolve().parents[2] / "examples" / "researcher" / "evals" / "suite.yaml"
CORPUS = SUITE.parents[1] / "corpus"
INSTALLED = Path("/usr/share/doc/python3.11/html")


def test_the_held_out_questions_name_installed_pages_outside_the_tutorial() -> None:
    items = [json.loads(line) for line in SUITE.with_name("heldout.jsonl").read_text().splitlines()]
    assert len(items) == 13 and len({i["id"] for i in items}) == 13
    for item in items:
        docs = item["expected"]["docs"]
        assert docs and not docs[0].startswith("tutorial/"), item["id"]
        if INSTALLED.is_dir():
            assert all((INSTALLED / doc).is_file() for doc in docs), item["id"]


def test_the_dataset_names_real_pages_and_labels_every_depth() -> None:
    items = [json.loads(line) for line in SUITE.with_name("questions.jsonl").read_text().splitlines()]
    assert len(items) == 27 and len({i["id"] for i in items}) == 27
    depths = [i["expected"]["depth"] for i in items]
    assert (depths.count("direct"), depths.count("shallow"), depths.count("deep")) == (3, 18, 6)
    assert all(not i["expected"]["docs"] for i in items if i["expected"]["depth"] == "direct")
    for item in items:
        assert item["tags"][0] == item["expected"]["depth"] and item["reference"]
        # a gold page is a shipped one, or a page of the full documentation that states the same answer
        # (a reference page beside the tutorial's): every question keeps a gold page in the fallback
        docs = item["expected"]["docs"]
        assert not docs or (CORPUS / docs[0]).is_file(), item["id"]
        assert all(doc.startswith("tutorial/") == (CORPUS / doc).is_file() for doc in docs), item["id"]
        if INSTALLED.is_dir():
            assert all((INSTALLED / doc).is_file() for doc in docs), item["id"]
        assert all(group and all(alt for alt in group) for group in item["expected"]["facts"])


def case(output: dict[str, Any], expected: dict[str, Any]) -> Case:
    call = ToolCallRecord(tool="python__research", arguments={}, output=output)
    item = Item(id="q", input="q", expected=expected)
    return Case(item=item, run_id="r", status="completed", output=output["answer"], calls=(call,))


def test_the_suite_loads_and_its_scorers_read_the_research_output(settings: Settings) -> None:
    suite, _ = load_suite(SUITE, ScorerEnv(base_dir=SUITE.parent, settings=settings))
    assert suite.agent_path() == SUITE.parents[1]
    assert {g.metric for g in suite.spec.gates} == {
        "trajectory",
        "retrieval.recall",
        "citations.precision",
        "routing",
        "correct",
    }
    passage = "The finally clause runs whether or not the try statement produces an exception."
    output = {
        "answer": f"{passage} [1] The else clause is a loop. [2]\n\nSources:\n[1] x",
        "route": {"depth": "shallow"},
        "claims": [
            {"sentence": passage, "cited": "t:1"},
            {"sentence": "The else clause is a loop.", "cited": "t:2"},
        ],
        "removed": [{"sentence": "invented", "cited": "t:1", "reason": "only 0%"}],
        "sources": [
            {"id": "t:1", "doc": "errors.html", "text": passage},
            {"id": "t:2", "doc": "venv.html", "text": "Create a virtual environment with venv."},
        ],
    }
    expected = {"depth": "shallow", "docs": ["errors.html", "modules.html"], "facts": [["whether or not"]]}
    assert citations(case(output, expected)) == {"precision": 0.5, "recall": 0.5, "kept": 2 / 3}
    assert correct(case(output, expected)) and routing(case(output, expected))
    assert not correct(case(output, {**expected, "facts": [["whether or not"], ["Sources"]]})), (
        "the sources list is not the answer"
    )
    assert not routing(case(output, {**expected, "depth": "deep"}))
    # answered direct: nothing cited, so no citation metric is measured (None: left out of the means)
    direct = {
        "answer": "84 (computed; no documents were needed).",
        "depth": "direct",
        "route": {"depth": "direct"},
    }
    summed = {"depth": "direct", "docs": [], "facts": [["84"]]}
    assert citations(case(direct, summed)) == {"precision": None, "recall": None, "kept": None}
    assert correct(case(direct, summed)) and routing(case(direct, summed))


@pytest.fixture
def _script_importable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(Path(__file__).parent))
    monkeypatch.delitem(sys.modules, "researcher_script", raising=False)


@pytest.mark.slow  # the corpus is embedded on the CPU
@pytest.mark.usefixtures("_script_importable")
async def test_two_questions_through_the_harness(tmp_path: Path) -> None:
    lines = by_id(SUITE.with_name("questions.jsonl").read_text().splitlines())
    picked = [lines["try-finally"], lines["name-and-encoding"], lines["sum"]]
    suite = subset_suite(SUITE, tmp_path, picked, agent=researcher_on_fallback(tmp_path))
    async with asyncio.timeout(900):
        record, rows = await run_suite(suite, model="function:researcher_script:script")
    summed = {m["name"]: m["value"] for m in rows.pop("sum").metrics}
    assert summed["routing"] == 1.0 and summed["correct"] == 1.0, "12 * 7 computed, no retrieval"
    assert summed["retrieval.recall"] is None and summed["citations.precision"] is None
    for item_id, row in rows.items():
        assert row.status == "done", (item_id, row.reason)
        values = {m["name"]: m["value"] for m in row.metrics}
        assert values["trajectory"] == 1.0 and values["routing"] == 1.0, (item_id, values)
        assert values["retrieval.recall"] == 1.0, (item_id, values)
        assert values["citations.precision"] == 1.0, "the invention was removed, the copies kept"
        assert 0 < values["citations.kept"] < 1.0, (item_id, values)
    summary = record.summary
    assert summary is not None
    gates = {g["metric"]: g["passed"] for g in summary["gates"]}
    assert gates["citations.precision"] and gates["routing"] and gates["retrieval.recall"]
