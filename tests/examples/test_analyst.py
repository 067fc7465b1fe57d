"""The main job's path end to end with a scripted model: the analyst in its real environment
(seeded workspace, data-analysis skill in the sandbox), durably on DBOS, then replayed."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from examples.analyst.evals.questions import QUESTIONS, expected
from examples.analyst.evals.scoring import is_correct

from shopfloor.config import Settings, load_settings
from shopfloor.ops.replay import replay_run
from shopfloor.runtime import Runtime, compose, open_environment
from shopfloor.workspace import Workspaces

ANALYST = Path(__file__).resolve().parents[2] / "examples" / "analyst"
QUESTION = next(q for q in QUESTIONS if q.id == "seattle-rain-month-2015")


async def committed(settings: Settings, commit: str | None) -> tuple[set[str], str]:
    """The files of the analyst's workspace at ``commit``, and its report.md."""
    assert commit is not None
    repo = Workspaces.from_settings(settings)
    try:
        ws = repo.workspace("analyst")
        return set(await ws.files(commit)), (await ws.read(commit, "report.md")).decode()
    finally:
        repo.close()


@pytest.fixture(autouse=True)
def _script_importable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(Path(__file__).parent))
    monkeypatch.delitem(sys.modules, "analyst_script", raising=False)


@pytest.mark.slow  # the data-analysis skill's pandas in a sandbox, several times
async def test_analyst_answers_with_figures_report_chart_and_replays() -> None:
    settings = load_settings()
    async with Runtime(compose(settings), caller="tester") as runtime:
        run_id = await runtime.start_run(ANALYST, QUESTION.text, model="function:analyst_script:script")
        async with asyncio.timeout(300):
            record = await runtime.wait(run_id)
        steps = await runtime.recorded_steps(run_id)

    assert record.status == "completed", record.error
    truth = expected(QUESTION)
    assert truth == {"group": 12, "value": 284.5}
    assert is_correct(record.output or "", truth), record.output
    assert "December" in (record.output or "")

    files, report = await committed(settings, record.workspace_commit)
    assert {"seattle-weather.csv", "cars.json", "report.md"} <= files
    charts = [f for f in files if f.startswith("charts/") and f.endswith(".png")]
    assert charts, files
    assert "284.5" in report and f"]({charts[0]})" in report

    names = [step.name for step in steps]
    assert any(n.startswith("tool:") and n.endswith(":data-analysis") for n in names), names
    assert any(n.startswith("schema:") for n in names), names

    # Replay: the loop fed the recorded outputs (no model, no sandbox) comes out the same.
    services = compose(settings)
    env = await open_environment(services.load_spec(ANALYST), services, run_id=run_id, model="test")
    try:
        replayed = await replay_run(
            env.loop, QUESTION.text, steps, run_id=run_id, expected_output=record.output
        )
    finally:
        await env.close()
    assert replayed.same, replayed


@pytest.mark.slow
async def test_analyst_run_is_traced() -> None:
    from shopfloor.telemetry import TraceStore, trace_store_url

    settings = load_settings()
    async with Runtime(compose(settings)) as runtime:
        run_id = await runtime.start_run(ANALYST, QUESTION.text, model="function:analyst_script:script")
        async with asyncio.timeout(300):
            record = await runtime.wait(run_id)
    assert record.status == "completed"
    store = TraceStore(trace_store_url(settings))
    try:
        spans = store.run_spans(run_id)
    finally:
        store.close()
    names = {span.name for span in spans}
    assert "invoke_agent analyst" in names
    assert "execute_tool data-analysis" in names
    assert any(name.startswith("chat ") for name in names)
    assert any(name.startswith("sandbox") for name in names), names


@pytest.mark.slow
@pytest.mark.usefixtures("real_models")
async def test_embedded_model_answers_the_default_question_and_replays(
    embedded_model: Callable[[str], Path],
) -> None:
    from shopfloor.telemetry import TraceStore, trace_store_url

    model = f"local:{embedded_model('qwen2.5-coder-0.5b')}"
    settings = load_settings()
    async with Runtime(compose(settings)) as runtime:
        run_id = await runtime.start_run(ANALYST, QUESTION.text, model=model)
        async with asyncio.timeout(900):
            record = await runtime.wait(run_id)
    assert record.status == "completed", record.error
    assert is_correct(record.output or "", expected(QUESTION)), record.output

    files, report = await committed(settings, record.workspace_commit)
    assert "284.5" in report
    assert any(f.startswith("charts/") and f.endswith(".png") for f in files)

    store = TraceStore(trace_store_url(settings))
    try:
        names = {span.name for span in store.run_spans(run_id)}
    finally:
        store.close()
    assert {"invoke_agent analyst", "execute_tool data-analysis", "sandbox.exec"} <= names
    assert any(name.startswith("chat ") for name in names)

    replay = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "shopfloor.cli", "replay", run_id, "--json"],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert replay.returncode == 0, replay.stdout + replay.stderr
    assert json.loads(replay.stdout)["same"] is True
