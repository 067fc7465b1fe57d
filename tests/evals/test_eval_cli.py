"""``shopfloor eval`` from the command line: run with --gate, show, compare, report, rescore."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from eval_support import AgentDir, write_suite
from typer.testing import CliRunner

from shopfloor.cli import app
from shopfloor.config import load_settings
from shopfloor.evals import EvalItemRow, Harness, item_run_id, load_suite
from shopfloor.runtime import Runtime, compose

cli = CliRunner()
GOOD = [
    '{"id": "a", "input": "answer=paris", "expected": "paris", "tags": ["t1"]}',
    '{"id": "b", "input": "answer=rome", "expected": "rome", "tags": ["t2"]}',
]


def _run(suite: Path, *args: str) -> tuple[int, dict]:  # type: ignore[type-arg]
    result = cli.invoke(app, ["eval", "run", str(suite), "--json", *args])
    return result.exit_code, json.loads(result.stdout) if result.stdout.strip() else {"output": result.output}


def test_gate_exit_codes_compare_and_report(agent: AgentDir, tmp_path: Path) -> None:
    gate = "gates:\n  - {metric: contains, min: 0.9, level: critical}\n"
    good_dir, bad_dir = tmp_path / "good", tmp_path / "bad"
    good_dir.mkdir()
    bad_dir.mkdir()
    good = write_suite(good_dir, agent.path, GOOD, extra=gate)
    code, good_run = _run(good, "--gate")
    assert code == 0, good_run
    assert good_run["evaluation"]["summary"]["gates_passed"] is True

    bad = write_suite(
        bad_dir,
        agent.path,
        [GOOD[0], GOOD[1].replace('"expected": "rome"', '"expected": "lyon"')],
        extra=gate,
    )
    code, bad_run = _run(bad, "--gate")
    assert code == 1, "a failed gate fails the command"
    assert bad_run["evaluation"]["summary"]["gates"][0]["value"] == 0.5
    code, _ = _run(bad)
    assert code == 0, "without --gate a failed gate is reported only"

    a, b = good_run["evaluation"]["eval_id"], bad_run["evaluation"]["eval_id"]
    compared = cli.invoke(app, ["eval", "compare", a[:10], b, "--json"])
    assert compared.exit_code == 0, compared.output
    result = json.loads(compared.stdout)
    assert result["metrics"]["contains"]["flipped"] == [{"item": "b", "from": True, "to": False}]

    out = tmp_path / "report"
    reported = cli.invoke(app, ["eval", "report", b, "--out", str(out), "--compare", a])
    assert reported.exit_code == 0, reported.output
    page = (out / "report.html").read_text()
    assert "<svg" in page and "mean per tag" in page and "latency" in page and "Comparison" in page
    assert "<script" not in page and "http" not in page, "self-contained: no script, nothing fetched"
    assert "shopfloor trace " in page and "shopfloor ws log run-" in page
    data = json.loads((out / "report.json").read_text())
    assert {i["item"] for i in data["items"]} == {"a", "b"} and all(i["run_id"] for i in data["items"])
    served = tmp_path / "served"
    linked = cli.invoke(
        app, ["eval", "report", b, "--out", str(served), "--server", "http://127.0.0.1:8080/"]
    )
    assert linked.exit_code == 0, linked.output
    page = (served / "report.html").read_text()
    for item in data["items"]:
        run = item["run_id"]
        assert f"href='http://127.0.0.1:8080/v1/runs/{run}/trace'" in page
        assert f"href='http://127.0.0.1:8080/v1/workspaces/run-{run}/log'" in page

    shown = cli.invoke(app, ["eval", "show", b, "--baseline", a, "--json"])
    assert shown.exit_code == 0, shown.output
    rescored = cli.invoke(app, ["eval", "rescore", b, "--json"])
    assert rescored.exit_code == 0, rescored.output
    assert json.loads(rescored.stdout)["summary"]["metrics"] == bad_run["evaluation"]["summary"]["metrics"]
    listed = cli.invoke(app, ["eval", "ls", "--json"])
    assert {e["eval_id"] for e in json.loads(listed.stdout)} >= {a, b}
    runs = cli.invoke(app, ["runs", "ls", "--json"])
    assert len([r for r in json.loads(runs.stdout) if r["agent"] == "evaluated"]) == 6


def test_a_bad_suite_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "suite.yaml").write_text("name: s\ndataset: d.jsonl\nscorers: [{type: numerik}]\n")
    result = cli.invoke(app, ["eval", "run", str(tmp_path / "suite.yaml")])
    assert result.exit_code != 0
    assert "unknown scorer type 'numerik'" in str(result.exception)


def test_runs_ls_lists_an_evaluations_item_runs(agent: AgentDir, tmp_path: Path) -> None:
    first, second = tmp_path / "one", tmp_path / "two"
    first.mkdir()
    second.mkdir()
    code, one = _run(write_suite(first, agent.path, GOOD, extra="repeat: 2\n"))
    assert code == 0, one
    code, two = _run(write_suite(second, agent.path, GOOD[:1]))
    assert code == 0, two
    eval_id = one["evaluation"]["eval_id"]
    shown = cli.invoke(app, ["eval", "show", eval_id])
    per_tag = [
        line.split("│")[1:-1] for line in shown.output.splitlines() if line.startswith(("│ t1 ", "│ t2 "))
    ]
    assert [[cell.strip() for cell in row] for row in per_tag] == [
        ["t1", "1", "1.000", "1.000"],
        ["t2", "1", "1.000", "1.000"],
    ], shown.output
    listed = cli.invoke(app, ["runs", "ls", "--eval", eval_id[:10], "--json"])
    assert listed.exit_code == 0, listed.output
    runs = json.loads(listed.stdout)
    assert sorted(r["eval_item"] for r in runs) == ["a", "a#1", "b", "b#1"]
    assert all(r["status"] == "completed" for r in runs)
    other = cli.invoke(app, ["runs", "ls", "--eval", two["evaluation"]["eval_id"], "--json"])
    assert [r["eval_item"] for r in json.loads(other.stdout)] == ["a"], "only that evaluation's runs"
    missing = cli.invoke(app, ["runs", "ls", "--eval", "nosuchevaluation"])
    assert missing.exit_code != 0 and "no evaluation 'nosuchevaluation'" in str(missing.exception)


def test_runs_ls_lists_an_items_run_before_its_result_is_written(agent: AgentDir, tmp_path: Path) -> None:
    """A run is found under the id derived from its item while its row still says pending (running, or
    left by a killed evaluation); an item with no run yet is not listed."""

    async def begun() -> tuple[str, str, list[EvalItemRow]]:
        harness = Harness(compose(load_settings()))
        try:
            suite, _ = load_suite(write_suite(tmp_path, agent.path, GOOD), harness.env(tmp_path))
            record = await harness.create(suite)
            async with Runtime(harness.services) as runtime:
                loaded = harness.services.load_spec(agent.path)
                run_id = item_run_id(record.eval_id, "a", 0)
                launched = await runtime.launch(loaded, "answer=paris", run_id=run_id)
                await launched.ended()
            return record.eval_id, launched.run_id, harness.store.items(record.eval_id)
        finally:
            harness.close()

    eval_id, run_id, rows = asyncio.run(begun())
    assert {row.item_id: row.status for row in rows} == {"a": "pending", "b": "pending"}
    listed = cli.invoke(app, ["runs", "ls", "--eval", eval_id, "--json"])
    assert listed.exit_code == 0, listed.output
    assert [(r["eval_item"], r["run_id"]) for r in json.loads(listed.stdout)] == [("a", run_id)]


def test_the_report_prints_bfcl_per_category_beside_the_published_figures() -> None:
    from shopfloor.cli._app import console
    from shopfloor.cli._eval import _print_benchmarks
    from shopfloor.evals import published_bfcl

    published = published_bfcl()
    tables = {
        "bfcl": {
            "metric": "bfcl",
            "categories": {
                "simple_python": {"mean": 0.75, "items": 20, "missing": 0},
                "parallel": {"mean": 0.5, "items": 18, "missing": 2},
            },
            "published": {
                "source": published["source"],
                "models": [
                    {
                        "model": m["model"],
                        "accuracy": {c: m["accuracy"][c] for c in ("simple_python", "parallel")},
                    }
                    for m in published["models"]
                ],
            },
        },
        "agentdojo": {
            "metric": "agentdojo",
            "suites": {
                "banking": {
                    "utility": {"mean": 0.5, "items": 4, "missing": 0},
                    "utility_under_attack": {"mean": 0.25, "items": 4, "missing": 0},
                    "attack_success": {"mean": 0.75, "items": 4, "missing": 0},
                }
            },
        },
    }
    with console.capture() as captured:
        _print_benchmarks(tables)
    text = captured.get()
    assert "0.750 of 20" in text and "0.500 of 18 (2 missing)" in text
    first = published["models"][0]
    assert first["model"] in text and f"{first['accuracy']['parallel']:.3f}" in text
    assert published["source"]["url"] in text.replace("\n", "")
    assert "banking" in text and "0.250 of 4" in text
