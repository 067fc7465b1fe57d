"""The analyst's evaluation on the harness: the dataset matches what pandas computes, the suite loads
with its gates, and (slow) a scripted analyst that always answers the Seattle rain question passes
that item, completes every run through the skill, and fails the single-aggregation accuracy gate."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import pytest
from examples.analyst.evals.scoring import DATASET, correct, dataset_lines
from suite_support import by_id, run_suite, subset_suite

from shopfloor.config import Settings
from shopfloor.evals import Case, Item, ScorerEnv, load_suite

SUITE = Path(__file__).resolve().parents[2] / "examples" / "analyst" / "evals" / "suite.yaml"


def test_the_dataset_is_what_pandas_computes() -> None:
    assert DATASET.read_text().splitlines() == dataset_lines(), "run python -m examples.analyst.evals.scoring"


def test_the_suite_loads_with_its_scorers_and_gates(settings: Settings) -> None:
    suite, _ = load_suite(SUITE, ScorerEnv(base_dir=SUITE.parent, settings=settings))
    assert suite.agent_path() == SUITE.parents[1]
    assert {g.metric for g in suite.spec.gates} == {"trajectory", "correct"}
    truth = {"group": 12, "value": 284.5}
    item = Item(id="q", input="q", expected=truth)
    assert correct(Case(item=item, run_id=None, status="completed", output="December: 284.5 mm"))
    assert not correct(Case(item=item, run_id=None, status="completed", output="November: 284.5 mm"))


@pytest.fixture
def _script_importable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(Path(__file__).parent))
    monkeypatch.delitem(sys.modules, "analyst_script", raising=False)


@pytest.mark.slow  # the data-analysis skill's pandas in a sandbox
@pytest.mark.usefixtures("_script_importable")
async def test_a_wrong_analyst_fails_the_gates(tmp_path: Path) -> None:
    """The suite's scorers and gates over two of its questions: the one the script answers, and one it
    answers as the rain question (the best month's sum of the temp_max the task names: wrong): the
    single-aggregation accuracy gate fails."""
    lines = by_id(dataset_lines())
    suite = subset_suite(SUITE, tmp_path, [lines["seattle-rain-month-2015"], lines["seattle-max-temp"]])
    async with asyncio.timeout(600):
        record, rows = await run_suite(suite, model="function:analyst_script:script")
    rain, other = rows["seattle-rain-month-2015"], rows["seattle-max-temp"]
    assert rain.status == "done", rain.reason
    values = {m["name"]: m["value"] for m in rain.metrics}
    assert (values["correct"], values["numeric"], values["trajectory"]) == (1.0, 1.0, 1.0)
    assert other.status == "done" and {m["name"]: m["value"] for m in other.metrics}["correct"] == 0.0
    summary = record.summary
    assert summary is not None and summary["metrics"]["correct"]["mean"] == 0.5
    gates = {(g["metric"], g.get("tag")): g["passed"] for g in summary["gates"]}
    assert gates == {("trajectory", None): True, ("correct", "single"): False, ("correct", None): True}
    assert summary["gates_passed"] is False
