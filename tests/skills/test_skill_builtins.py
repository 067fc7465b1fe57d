"""The built-in skills, run the real way: pandas and matplotlib installed as skill dependencies,
in the sandbox, over real data (vega-datasets) in a versioned workspace."""

from __future__ import annotations

import csv
import statistics
from collections import defaultdict
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
import vega_datasets

from shopfloor.config import Settings, load_settings
from shopfloor.errors import ToolExecutionError
from shopfloor.skills import BUILTIN_DIR, SkillTool, TrustPolicy, open_skill
from shopfloor.tools import ToolContext, ToolServices
from shopfloor.workspace import Workspaces, WorkspaceView

pytestmark = pytest.mark.slow
DATA = Path(vega_datasets.__file__).parent / "_data"


@pytest.fixture(scope="module")
def shared_home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Settings]:
    """One data dir for the module, so the pandas environment is installed once, as in production."""
    yield load_settings({"SHOPFLOOR_HOME": str(tmp_path_factory.mktemp("builtin-home"))})


@pytest.fixture
async def view(shared_home: Settings, request: pytest.FixtureRequest) -> AsyncIterator[WorkspaceView]:
    repo = Workspaces.from_settings(shared_home)
    view = await repo.workspace(request.node.name.replace("_", "-")[:60]).open()
    await view.write("seattle-weather.csv", (DATA / "seattle-weather.csv").read_bytes())
    await view.write("cars.json", (DATA / "cars.json").read_bytes())
    yield view
    repo.close()


def _tool(name: str, settings: Settings, view: WorkspaceView) -> SkillTool:
    skill = open_skill(BUILTIN_DIR / name, TrustPolicy.from_settings(settings))
    return SkillTool(skill, settings=settings, workspace=view)


def _ctx(view: WorkspaceView) -> ToolContext:
    return ToolContext(
        run_id="r", step=1, call_id="c", idempotency_key="r:1", services=ToolServices(workspace=view)
    )


async def _analyse(settings: Settings, view: WorkspaceView, **args: Any) -> Any:
    tool = _tool("data-analysis", settings, view)
    return await tool.call(tool.validate(args), _ctx(view))


def _seattle() -> list[dict[str, str]]:
    with (DATA / "seattle-weather.csv").open() as fh:
        return list(csv.DictReader(fh))


async def test_wettest_month_of_2015(shared_home: Settings, view: WorkspaceView) -> None:
    rain: dict[int, float] = defaultdict(float)
    for row in _seattle():
        if row["date"].startswith("2015"):
            rain[int(row["date"][5:7])] += float(row["precipitation"])
    month = max(rain, key=lambda m: rain[m])
    out = await _analyse(
        shared_home,
        view,
        operation="best_group",
        file="seattle-weather.csv",
        group_by="date.month",
        column="precipitation",
        stat="sum",
        order="max",
        where={"column": "date.year", "op": "==", "value": 2015},
    )
    assert out["group"] == month
    assert out["value"] == pytest.approx(rain[month])
    assert str(month) in out["answer"]


async def test_correlation_and_regression_match_the_data(shared_home: Settings, view: WorkspaceView) -> None:
    rows = _seattle()
    x = [float(r["temp_min"]) for r in rows]
    y = [float(r["temp_max"]) for r in rows]
    corr = await _analyse(
        shared_home, view, operation="correlation", file="seattle-weather.csv", x="temp_min", y="temp_max"
    )
    assert corr["pearson_r"] == pytest.approx(statistics.correlation(x, y), abs=1e-6)
    fit = await _analyse(
        shared_home, view, operation="regression", file="seattle-weather.csv", x="temp_min", y="temp_max"
    )
    expected = statistics.linear_regression(x, y)
    assert fit["slope"] == pytest.approx(expected.slope, abs=1e-5)
    assert fit["intercept"] == pytest.approx(expected.intercept, abs=1e-5)


async def test_chart_and_table_are_committed_to_the_workspace(
    shared_home: Settings, view: WorkspaceView
) -> None:
    out = await _analyse(
        shared_home,
        view,
        operation="chart",
        file="seattle-weather.csv",
        kind="bar",
        x="date.month",
        y="precipitation",
        stat="sum",
        output="charts/rain.png",
    )
    assert out["chart"] == "charts/rain.png"
    table = await _analyse(
        shared_home,
        view,
        operation="group_aggregate",
        file="cars.json",
        group_by="Origin",
        column="Horsepower",
        stat="mean",
        save_table="tables/hp.csv",
    )
    assert {g["group"] for g in table["groups"]} == {"USA", "Europe", "Japan"}
    head = await view.workspace.head()
    assert (await view.workspace.read(head, "charts/rain.png")).startswith(b"\x89PNG")
    assert (await view.workspace.read(head, "tables/hp.csv")).startswith(b"Origin,mean_Horsepower")


async def test_a_wrong_column_is_an_error_the_model_can_fix(
    shared_home: Settings, view: WorkspaceView
) -> None:
    with pytest.raises(ToolExecutionError, match=r"mean needs a numeric column; 'weather' is not numeric"):
        await _analyse(
            shared_home,
            view,
            operation="column_stat",
            file="seattle-weather.csv",
            column="weather",
            stat="mean",
        )
    with pytest.raises(ToolExecutionError, match=r"no column 'rain'; columns: date, precipitation"):
        await _analyse(
            shared_home, view, operation="column_stat", file="seattle-weather.csv", column="rain", stat="sum"
        )


async def test_staged_schemas_come_from_the_data_and_the_task(
    shared_home: Settings, view: WorkspaceView
) -> None:
    tool = _tool("data-analysis", shared_home, view)
    task = "Which month of 2015 had the most rain in Seattle?"
    first = await tool.next_schema({}, 0, task=task)
    assert first is not None and first["properties"]["operation"]["enum"][0] == "best_group"
    files = await tool.next_schema({"operation": "best_group"}, 1, task=task)
    assert files is not None
    assert files["properties"]["file"]["enum"] == [
        "seattle-weather.csv",
        "cars.json",
    ]  # the task names Seattle
    chosen = {"operation": "best_group", "file": "seattle-weather.csv"}
    args = await tool.next_schema(chosen, 2, task=task)
    assert args is not None
    assert args["required"] == ["group_by", "stat", "column", "order"]
    assert "precipitation" in args["properties"]["column"]["enum"]
    assert {"date.month", "date.year", "weather"} <= set(args["properties"]["group_by"]["enum"])
    where = await tool.next_schema({**chosen, "group_by": "date.month"}, 3, task=task)
    assert where is not None
    # the values the task names, years first; no filter stage where it names none
    assert where["properties"]["where_match"]["enum"] == ["date.year == 2015", "weather == rain"]
    assert await tool.next_schema(chosen, 3, task="Which month had the most precipitation?") is None
    assert await tool.next_schema({"operation": "describe", "file": "cars.json"}, 2, task=task) is None
    column_args = await tool.next_schema(
        {"operation": "column_stat", "file": "seattle-weather.csv"}, 2, task=task
    )
    assert column_args is not None and "weather" not in column_args["properties"]["column"]["enum"]


async def test_the_schema_plan_gives_each_stage_as_its_own_run_does(
    shared_home: Settings, view: WorkspaceView
) -> None:
    """data-analysis answers a decision's stages from one run: the same schemas, stage by stage."""
    task = "Which month of 2015 had the most rain in Seattle?"
    chosen = {"operation": "best_group", "file": "seattle-weather.csv"}
    stages = [
        ({}, 0),
        ({"operation": "best_group"}, 1),
        (chosen, 2),
        ({**chosen, "group_by": "date.month", "stat": "sum", "column": "precipitation", "order": "max"}, 3),
        ({**chosen, "where_match": "date.year == 2015"}, 4),
        ({"operation": "describe", "file": "cars.json"}, 2),
        ({"operation": "filter", "file": "cars.json"}, 2),
    ]
    planned = _tool("data-analysis", shared_home, view)
    from_plan = [await planned.next_schema(c, s, task=task) for c, s in stages]
    ctx = ToolContext(run_id="schema", step=0, call_id="schema", idempotency_key="schema")
    alone = []
    for c, s in stages:  # a fresh tool per stage has no plan: each stage is a run of its own
        run = await _tool("data-analysis", shared_home, view).execute(
            {"stage": s, "chosen": c, "task": task}, ctx, mode="schema"
        )
        alone.append(run.output)
    assert from_plan == alone
    assert from_plan[4] is None and from_plan[5] is None


async def test_python_skill_writes_parquet_that_data_analysis_reads(
    shared_home: Settings, view: WorkspaceView
) -> None:
    python = _tool("python", shared_home, view)
    code = (
        "import pandas as pd\n"
        "df = pd.read_csv('seattle-weather.csv')\n"
        "df[df.weather == 'sun'].to_parquet('sunny.parquet')\n"
        "print('rows', len(df))\n"
        "len(df[df.weather == 'sun'])"
    )
    out = await python.call({"code": code}, _ctx(view))
    sunny = sum(1 for row in _seattle() if row["weather"] == "sun")
    assert out == {"stdout": f"rows {len(_seattle())}\n", "result": str(sunny), "files": ["sunny.parquet"]}
    counted = await _analyse(shared_home, view, operation="count_rows", file="sunny.parquet")
    assert counted["count"] == sunny


async def test_python_skill_reports_the_traceback(shared_home: Settings, view: WorkspaceView) -> None:
    python = _tool("python", shared_home, view)
    with pytest.raises(ToolExecutionError) as info:
        await python.call({"code": "x = 1\ny = x / 0\n"}, _ctx(view))
    assert "ZeroDivisionError: division by zero" in str(info.value)
    assert 'File "<agent code>", line 2' in str(info.value)
