"""``shopfloor trace``, ``metrics`` and ``replay`` on a run traced into this test's store.

Sync tests: the commands run their own event loop.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from shopfloor.agent import build_agent
from shopfloor.cli import app
from shopfloor.config import Settings
from shopfloor.errors import RunNotFoundError
from shopfloor.spec import load_spec, spec_resolvers
from shopfloor.telemetry import configure_telemetry

runner = CliRunner()

SPEC = """\
name: {name}
model: test
instructions: Compute with the calculator.
tools:
  - name: {tool}
    source: builtin:calculator
"""


def _spec(tmp_path: Path, name: str, tool: str = "calculator") -> Path:
    path = tmp_path / name / "agent.yaml"
    path.parent.mkdir()
    path.write_text(SPEC.format(name=name, tool=tool))
    return path


@pytest.fixture
def traced_run(tmp_path: Path, settings: Settings) -> Path:
    spec = _spec(tmp_path, "calc")
    with configure_telemetry(settings):
        loop = build_agent(load_spec(spec, resolvers=spec_resolvers()), settings)
        result = asyncio.run(loop.run("what is 17*23?", run_id="cli-run"))
    assert result.output is not None and "391" in result.output
    return spec


def invoke(*args: str) -> tuple[int, str]:
    result = runner.invoke(app, list(args))
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result.exit_code, result.output


def test_trace_waterfall_json_and_otlp_export(traced_run: Path) -> None:
    code, out = invoke("trace", "cli-run")
    assert code == 0
    for name in ("invoke_agent calc", "plan", "chat test", "execute_tool calculator", "█"):
        assert name in out

    code, out = invoke("trace", "cli-run", "--json")
    data = json.loads(out)
    [root] = data["spans"]
    assert root["name"] == "invoke_agent calc"
    assert [c["name"] for c in root["children"]] == ["plan", "execute_tool calculator", "plan"]
    assert root["children"][0]["children"][0]["name"] == "chat test"

    code, out = invoke("trace", "export", "cli-run")
    spans = json.loads(out)["resourceSpans"][0]["scopeSpans"][0]["spans"]
    assert len(spans) == 6 and {s["traceId"] for s in spans} == {data["trace_ids"][0]}


def test_trace_of_an_unknown_run_says_so(traced_run: Path) -> None:
    with pytest.raises(RunNotFoundError, match="no spans for run 'nope'"):
        invoke("trace", "nope")


def test_metrics_table_json_filters_and_prometheus(traced_run: Path) -> None:
    code, out = invoke("metrics")
    assert code == 0 and "per component" in out and "execute_tool" not in out and "tool" in out
    data = json.loads(invoke("metrics", "--json")[1])
    assert (data["runs"], data["completion_rate"]) == (1, 1.0)
    assert {c["component"]: c["calls"] for c in data["components"]} == {
        "model": 2,
        "plan": 2,
        "run": 1,
        "tool": 1,
    }
    assert json.loads(invoke("metrics", "--json", "--agent", "other")[1])["runs"] == 0
    assert json.loads(invoke("metrics", "--json", "--agent", "calc", "--since", "1h")[1])["runs"] == 1
    assert json.loads(invoke("metrics", "--json", "--since", "2999-01-01")[1])["runs"] == 0
    assert "# TYPE shopfloor_runs_total counter" in invoke("metrics", "--prometheus")[1]


def test_replay_same_divergent_and_fork(traced_run: Path, tmp_path: Path) -> None:
    code, out = invoke("replay", "cli-run")
    assert code == 0, out
    assert "every step and the answer came out as recorded" in out
    report = json.loads(invoke("replay", "cli-run", "--json")[1])
    assert report["same"] and [s["actual"] for s in report["steps"]] == [
        "model:1",
        "tool:1:calculator",
        "model:2",
    ]

    renamed = _spec(tmp_path, "calc-v2", tool="calc")
    code, out = invoke("replay", "cli-run", "--agent", str(renamed), "--json")
    assert code == 1
    diverged = json.loads(out)
    assert diverged["divergence"]["index"] == 2 and diverged["divergence"]["expected"] == "tool:1:calculator"

    v3 = _spec(tmp_path, "calc-v3")
    code, out = invoke("replay", "cli-run", "--from", "model:2", "--agent", str(v3), "--json")
    assert code == 0, out
    fork = json.loads(out)
    assert fork["forked_at"] == 3 and fork["status"] == "completed"
    assert fork["run_id"].startswith("cli-run-fork-")
    assert (
        json.loads(invoke("trace", fork["run_id"], "--json")[1])["spans"][0]["name"] == "invoke_agent calc-v3"
    )


def test_replay_warns_when_the_spec_changed_since_the_run(traced_run: Path) -> None:
    traced_run.write_text(traced_run.read_text().replace("Compute with", "Always compute with"))
    result = runner.invoke(app, ["replay", "cli-run"])
    assert result.exit_code == 0, result.output
    assert "changed since run cli-run" in result.stderr
