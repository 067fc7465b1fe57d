"""BFCL through the harness: its items read from the installed bfcl-eval package's files, scored by
BFCL's own AST checker (loaded without importing the package), answers decoded without evaluating them."""

from __future__ import annotations

import asyncio
import json
import shutil
import sys
from pathlib import Path
from typing import Any

import pytest

from shopfloor.config import Settings, load_settings
from shopfloor.errors import EvalError, SpecError
from shopfloor.evals import (
    BfclPackage,
    Case,
    Harness,
    Item,
    ScoreOptions,
    ScorerEnv,
    decode_calls,
    load_datasets,
    load_source,
    load_suite,
    report_html,
    report_json,
)
from shopfloor.evals._bfcl_scorer import BfclScorer
from shopfloor.runtime import compose

HERE = Path(__file__).parent


@pytest.fixture
def settings() -> Settings:
    settings = load_settings()
    try:
        BfclPackage.locate(settings)
    except EvalError as exc:  # the set-up (scripts/bootstrap.sh) installs it; say so where it did not
        pytest.skip(str(exc))
    return settings


def scorer(settings: Settings) -> BfclScorer:
    return BfclScorer("bfcl", ScoreOptions(), ScorerEnv(base_dir=Path("."), settings=settings))


def calls_of(expected: list[dict[str, dict[str, list[Any]]]]) -> list[str]:
    """Each call with the first possible value of each parameter (optional ones left out)."""
    calls = []
    for call in expected:
        ((name, params),) = call.items()
        args = ", ".join(f"{key}={values[0]!r}" for key, values in params.items() if values[0] != "")
        calls.append(f"{name}({args})")
    return calls


def answer_of(expected: list[dict[str, dict[str, list[Any]]]]) -> str:
    return "[" + ", ".join(calls_of(expected)) + "]"


def case(item: Item, output: str) -> Case:
    return Case(item=item, run_id=None, status="completed", output=output)


def test_decoding_reads_calls_and_evaluates_nothing() -> None:
    assert decode_calls("[f(a=1, b=-2.5), m.n.g(c=[1, 'x'], d={'k': (1, 2)}, e=True)]") == [
        {"f": {"a": 1, "b": -2.5}},
        {"m.n.g": {"c": [1, "x"], "d": {"k": (1, 2)}, "e": True}},
    ]
    assert decode_calls("```\nf(x=None)\n```") == [{"f": {"x": None}}]
    # positional arguments are dropped, as BFCL's decoder drops them (its checker then names what is missing)
    assert decode_calls("math.hypot(4, 5)") == [{"math.hypot": {}}]
    # a call without keywords as a value stays its text, as in BFCL; nothing is called
    assert decode_calls("[f(a=(lambda: 1)())]") == [{"f": {"a": "(lambda: 1)()"}}]
    for hostile in ("[f(a=2**99999999)]", "[f(a=lambda: 1)]", "[f(a=[i for i in range(9)])]"):
        with pytest.raises(ValueError):
            decode_calls(hostile)
    with pytest.raises(ValueError, match="nested too deep"):
        decode_calls("[f(a=" + "[" * 40 + "]" * 40 + ")]")
    with pytest.raises(ValueError, match="over"):
        decode_calls("[f(a='" + "x" * 30_000 + "')]")


def test_a_bounded_subset_of_a_category_with_its_possible_answers(settings: Settings) -> None:
    first = load_source({"source": "bfcl", "category": "parallel", "limit": 3}, settings)
    assert [item.id for item in first.items] == ["parallel_0", "parallel_1", "parallel_2"]
    again = load_source({"source": "bfcl", "category": "parallel", "limit": 3}, settings)
    assert first.digest == again.digest
    item = first.items[0]
    assert item.tags == ("parallel",)
    assert item.metadata["category"] == "parallel" and item.metadata["functions"]
    assert isinstance(item.expected, list) and len(item.expected) >= 2
    # BFCL's default prompt (from its own templates), the functions as JSON, then the question
    assert "[func_name1(params_name1=params_value1" in item.input
    assert json.dumps(item.metadata["functions"], indent=4) in item.input
    shifted = load_source({"source": "bfcl", "category": "parallel", "offset": 2, "limit": 2}, settings)
    assert [i.id for i in shifted.items] == ["parallel_2", "parallel_3"]
    assert shifted.digest != first.digest
    picked = load_source({"source": "bfcl", "category": "multiple", "ids": ["multiple_7"]}, settings)
    assert [i.id for i in picked.items] == ["multiple_7"]
    with pytest.raises(EvalError, match="no items multiple_9999"):
        load_source({"source": "bfcl", "category": "multiple", "ids": ["multiple_9999"]}, settings)
    with pytest.raises(SpecError, match="category"):
        load_source({"source": "bfcl", "category": "multi_turn_base"}, settings)


@pytest.mark.parametrize(
    "category", ["simple_python", "multiple", "parallel", "parallel_multiple", "live_simple", "live_parallel"]
)
async def test_bfcls_checker_accepts_the_possible_answer_and_rejects_a_wrong_one(
    settings: Settings, category: str
) -> None:
    dataset = load_source({"source": "bfcl", "category": category, "limit": 5}, settings)
    bfcl = scorer(settings)
    for item in dataset.items:
        (right,) = await bfcl.score(case(item, answer_of(item.expected)))
        assert right.value == 1.0 and right.passed, (item.id, answer_of(item.expected), right.detail)
        (wrong,) = await bfcl.score(case(item, "[no_such_function(x=1)]"))
        assert wrong.value == 0.0 and not wrong.passed and wrong.detail["error_type"], wrong.detail
    (odd,) = await bfcl.score(
        case(dataset.items[0], answer_of(dataset.items[0].expected)[:-2] + ", z={(1, 2): 3})]")
    )
    assert not odd.passed and isinstance(odd.detail["decoded"], str), "a tuple key: kept as text"
    name = next(iter(dataset.items[0].expected[0]))
    (positional,) = await bfcl.score(case(dataset.items[0], f"{name}(1, 2)"))
    assert not positional.passed and positional.detail["error_type"] != "ast_decoder:decoder_failed"
    (garbage,) = await bfcl.score(case(dataset.items[0], "I would call f"))
    assert garbage.detail["error_type"] == "ast_decoder:decoder_failed"
    assert not [name for name in sys.modules if name.startswith("bfcl_eval")], "the checker leaked modules"


async def test_parallel_calls_count_in_any_order_and_a_wrong_value_is_named(settings: Settings) -> None:
    (item,) = load_source({"source": "bfcl", "category": "parallel", "limit": 1}, settings).items
    calls = calls_of(item.expected)
    reordered = "[" + ", ".join(reversed(calls)) + "]"
    (metric,) = await scorer(settings).score(case(item, reordered))
    assert metric.passed, metric.detail
    (short,) = await scorer(settings).score(case(item, f"[{calls[0]}]"))
    assert not short.passed and "parallel" in str(short.detail["error_type"])


def test_a_suite_names_a_bad_source_option_where_it_is(tmp_path: Path) -> None:
    suite = tmp_path / "suite.yaml"
    suite.write_text(
        "name: b\nagent: .\ndataset:\n  - {source: bfcl, category: simple_python, limt: 3}\n"
        "  - {source: nope}\nscorers:\n  - {type: bfcl}\n"
    )
    with pytest.raises(SpecError) as info:
        load_suite(suite)
    text = str(info.value)
    assert "suite.yaml:4" in text and "limt" in text and "known: limit" in text
    assert "suite.yaml:5" in text and "unknown dataset source 'nope'" in text


AGENT = """\
name: bfcl-oracle
model: function:bfcl_oracle:script
decision: one_shot
limits:
  max_steps: 2
"""


@pytest.mark.usefixtures("fast_runtime")
async def test_bfcl_categories_run_through_the_harness_scored_per_category(
    settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    agent = tmp_path / "agent"
    agent.mkdir()
    shutil.copy(HERE / "bfcl_oracle.py", agent / "bfcl_oracle.py")
    (agent / "agent.yaml").write_text(AGENT)
    monkeypatch.syspath_prepend(str(agent))
    monkeypatch.delitem(sys.modules, "bfcl_oracle", raising=False)
    answers = {}
    for category in ("simple_python", "parallel"):
        for item in load_source({"source": "bfcl", "category": category, "limit": 3}, settings).items:
            if item.id != "parallel_1":  # one item answered wrongly
                answers[item.input.strip().splitlines()[-1]] = answer_of(item.expected)
    (agent / "answers.json").write_text(json.dumps(answers))
    suite_path = tmp_path / "suite.yaml"
    suite_path.write_text(
        f"name: bfcl\nagent: {agent}\ndataset:\n"
        "  - {source: bfcl, category: simple_python, limit: 3}\n"
        "  - {source: bfcl, category: parallel, limit: 3}\n"
        "concurrency: 3\nscorers:\n  - {type: bfcl}\n"
        "gates:\n  - {metric: bfcl, tag: simple_python, min: 1.0}\n  - {metric: bfcl, min: 0.9}\n"
    )
    harness = Harness(compose(load_settings()))
    try:
        suite, _ = load_suite(suite_path, harness.env(tmp_path))
        record = await harness.run(suite)
        rows = harness.store.items(record.eval_id)
    finally:
        harness.close()
    scores = {row.item_id: row.metrics[0]["value"] for row in rows}
    assert scores == {
        "simple_python_0": 1.0,
        "simple_python_1": 1.0,
        "simple_python_2": 1.0,
        "parallel_0": 1.0,
        "parallel_1": 0.0,
        "parallel_2": 1.0,
    }
    assert all(row.status == "done" and row.run_id for row in rows)
    gates = {(g["metric"], g.get("tag")): g["passed"] for g in record.summary["gates"]}
    assert gates == {("bfcl", "simple_python"): True, ("bfcl", None): False}
    # the report: accuracy per category beside the figures BFCL's leaderboard publishes (shipped data)
    bfcl = report_json(record, rows)["benchmarks"]["bfcl"]
    assert bfcl["categories"] == {
        "simple_python": {"mean": 1.0, "items": 3, "missing": 0},
        "parallel": {"mean": 2 / 3, "items": 3, "missing": 0},
    }
    published = {model["model"]: model["accuracy"] for model in bfcl["published"]["models"]}
    assert published["Qwen2.5-1.5B-Instruct (Prompt)"] == {"simple_python": 0.8875, "parallel": 0.7}
    assert "ShishirPatil/gorilla" in bfcl["published"]["source"]["url"]
    page = report_html(record, rows)
    assert "BFCL accuracy per category" in page and "Hammer2.0-0.5b (FC)" in page and "0.667" in page


def test_the_configured_package_folder_comes_first_and_its_files_are_checked(
    settings: Settings, tmp_path: Path
) -> None:
    installed = BfclPackage.locate(settings).root
    mine = tmp_path / "bfcl" / "bfcl_eval"
    for module in ("constants/enums.py", "constants/type_mappings.py", "constants/default_prompts.py"):
        (mine / module).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(installed / module, mine / module)
    shutil.copytree(installed / "eval_checker" / "ast_eval", mine / "eval_checker" / "ast_eval")
    (mine / "data" / "possible_answer").mkdir(parents=True)
    question = {
        "id": "simple_python_0",
        "question": [[{"role": "user", "content": "Double 21."}]],
        "function": [
            {
                "name": "double",
                "description": "x2",
                "parameters": {
                    "type": "dict",
                    "properties": {"n": {"type": "integer", "description": "n"}},
                    "required": ["n"],
                },
            }
        ],
    }
    (mine / "data" / "BFCL_v4_simple_python.json").write_text(
        json.dumps(question) + "\n" + json.dumps({**question, "id": "simple_python_1"}) + "\n"
    )
    answers = mine / "data" / "possible_answer" / "BFCL_v4_simple_python.json"
    answers.write_text(
        json.dumps({"id": "simple_python_0", "ground_truth": [{"double": {"n": [21]}}]}) + "\n"
    )
    configured = settings.model_copy(
        update={"evals": settings.evals.model_copy(update={"bfcl_path": mine.parent})}
    )
    assert BfclPackage.locate(configured).root == mine
    (item,) = load_source({"source": "bfcl", "category": "simple_python", "limit": 1}, configured).items
    assert item.input.endswith("Double 21.") and item.expected == [{"double": {"n": [21]}}]
    (metric,) = asyncio.run(scorer(configured).score(case(item, "[double(n=21)]")))
    assert metric.passed
    with pytest.raises(
        SpecError, match=r"BFCL_v4_simple_python.json:2.*simple_python_1 has no possible answer"
    ):
        load_source({"source": "bfcl", "category": "simple_python"}, configured)
    (mine / "data" / "BFCL_v4_simple_python.json").write_text("{not json\n")
    with pytest.raises(SpecError, match=r"BFCL_v4_simple_python.json:1.*invalid JSON"):
        load_source({"source": "bfcl", "category": "simple_python"}, configured)


def test_the_example_suite_is_valid_and_bounded(settings: Settings) -> None:
    root = Path(__file__).parents[2] / "examples" / "bfcl"
    env = ScorerEnv(base_dir=root / "evals", settings=settings)
    suite, _ = load_suite(root / "evals" / "suite.yaml", env)
    assert suite.agent_path() == root.resolve()
    items, digest = load_datasets(suite.datasets(), source=lambda entry: load_source(entry, settings))
    assert len(items) == 60 and digest.startswith("sha256:")
    assert {tag for item in items for tag in item.tags} == {"simple_python", "multiple", "parallel"}
