"""The SQL connector on a real public data set (vega-datasets' Seattle weather, 1,461 days) loaded
into SQLite and into the real PostgreSQL at 127.0.0.1:5432: discovery, queries, refusals, bounds."""

from __future__ import annotations

import csv
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
import vega_datasets
from connector_support import connector

from shopfloor.connectors import Connectors, SqlConnector
from shopfloor.errors import ConnectorError
from shopfloor.tools import ToolContext

CTX = ToolContext(run_id="run-1", step=1, call_id="c1", idempotency_key="run-1:1")
WEATHER = Path(vega_datasets.__file__).parent / "_data" / "seattle-weather.csv"
COLUMNS = ["date", "precipitation", "temp_max", "temp_min", "wind", "weather"]


def weather_rows() -> list[tuple[Any, ...]]:
    with WEATHER.open() as handle:
        return [
            (
                r["date"].replace("/", "-"),
                float(r["precipitation"]),
                float(r["temp_max"]),
                float(r["temp_min"]),
                float(r["wind"]),
                r["weather"],
            )
            for r in csv.DictReader(handle)
        ]


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def weather_db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[str, str]]:
    """(kind, URL) of a database holding the table ``weather``."""
    rows = weather_rows()
    if request.param == "sqlite":
        path = tmp_path / "weather.db"
        with sqlite3.connect(path) as conn:
            conn.execute(
                "CREATE TABLE weather (date TEXT, precipitation REAL, temp_max REAL, temp_min REAL,"
                " wind REAL, weather TEXT)"
            )
            conn.executemany("INSERT INTO weather VALUES (?, ?, ?, ?, ?, ?)", rows)
        conn.close()
        yield "sqlite", f"sqlite:///{path}"
        return
    url = str(request.getfixturevalue("postgres_schema_url"))
    with psycopg.connect(url) as conn:
        conn.execute(
            "CREATE TABLE weather (date date, precipitation double precision, temp_max double precision,"
            " temp_min double precision, wind double precision, weather text)"
        )
        with conn.cursor() as cursor:
            cursor.executemany("INSERT INTO weather VALUES (%s, %s, %s, %s, %s, %s)", rows)
    yield "postgresql", url


def sql(url: str, **extra: Any) -> SqlConnector:
    made = SqlConnector(connector(name="wh", sql={"url": url, **extra}), Connectors(secrets=None).secrets)
    return made


def placeholder(kind: str) -> str:
    return "?" if kind == "sqlite" else "%s"


async def test_schema_discovery_shows_columns_types_and_samples(weather_db: tuple[str, str]) -> None:
    _, url = weather_db
    tables = await sql(url).schema()
    (weather,) = [t for t in tables if t["table"] == "weather"]
    assert [c["name"] for c in weather["columns"]] == COLUMNS
    types = {c["name"]: c["type"].lower() for c in weather["columns"]}
    assert types["temp_max"] in ("real", "double precision")
    assert types["weather"] == "text"
    assert len(weather["sample_rows"]) == 3
    assert weather["sample_rows"][0][0] == "2012-01-01"


async def test_a_query_with_parameters_answers_from_the_data(weather_db: tuple[str, str]) -> None:
    kind, url = weather_db
    p = placeholder(kind)
    result = await sql(url).query(
        f"SELECT count(*), max(temp_max) FROM weather WHERE weather = {p} AND precipitation > {p}",
        ["rain", 20.0],
    )
    expected = [r for r in weather_rows() if r[5] == "rain" and r[1] > 20.0]
    assert result["rows"] == [[len(expected), max(r[2] for r in expected)]]
    assert result["columns"][1] in ("max", "max(temp_max)")


async def test_a_parameter_is_a_value_never_sql(weather_db: tuple[str, str]) -> None:
    kind, url = weather_db
    p = placeholder(kind)
    hostile = "rain' OR '1'='1"
    result = await sql(url).query(f"SELECT count(*) FROM weather WHERE weather = {p}", [hostile])
    assert result["rows"] == [[0]]


async def test_the_row_limit_truncates_and_says_so(weather_db: tuple[str, str]) -> None:
    _, url = weather_db
    result = await sql(url, row_limit=10).query("SELECT date FROM weather ORDER BY date")
    assert len(result["rows"]) == 10 and result["truncated"] is True
    small = await sql(url, row_limit=10).query("SELECT date FROM weather ORDER BY date LIMIT 5")
    assert len(small["rows"]) == 5 and small["truncated"] is False


async def test_a_literal_percent_sign_works_without_parameters(weather_db: tuple[str, str]) -> None:
    _, url = weather_db
    result = await sql(url).query("SELECT count(*) FROM weather WHERE weather LIKE 'su%'")
    assert result["rows"] == [[sum(1 for r in weather_rows() if r[5].startswith("su"))]]


@pytest.mark.parametrize(
    "statement",
    [
        "DELETE FROM weather",
        "UPDATE weather SET wind = 0",
        "INSERT INTO weather (weather) VALUES ('x')",
        "DROP TABLE weather",
        "CREATE TABLE x (a int)",
        "  /* sneaky */ DELETE FROM weather",
    ],
)
async def test_writes_and_ddl_are_refused_before_they_run(
    weather_db: tuple[str, str], statement: str
) -> None:
    _, url = weather_db
    with pytest.raises(ConnectorError, match="only read-only queries are allowed"):
        await sql(url).query(statement)
    assert (await sql(url).query("SELECT count(*) FROM weather"))["rows"] == [[1461]]


@pytest.mark.parametrize(
    "statement",
    [
        "WITH gone AS (DELETE FROM weather RETURNING 1) SELECT count(*) FROM gone",
        "SELECT 1; DELETE FROM weather",
        "SELECT 1; COMMIT; DELETE FROM weather",
    ],
)
async def test_the_database_refuses_writes_hidden_in_a_read(
    weather_db: tuple[str, str], statement: str
) -> None:
    _, url = weather_db
    with pytest.raises(ConnectorError, match=r"read-only|one statement|not authorized|syntax error"):
        await sql(url).query(statement)
    assert (await sql(url).query("SELECT count(*) FROM weather"))["rows"] == [[1461]]


async def test_a_long_query_is_stopped_at_the_statement_timeout(weather_db: tuple[str, str]) -> None:
    _, url = weather_db
    slow = (
        "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 100000000) "
        "SELECT count(*) FROM n"
    )
    started = time.monotonic()
    with pytest.raises(ConnectorError, match=r"ran longer than 0.5 s and was stopped"):
        await sql(url, statement_timeout=0.5).query(slow)
    assert time.monotonic() - started < 5


async def test_tools_and_allow_list(weather_db: tuple[str, str]) -> None:
    _, url = weather_db
    pool = Connectors(secrets=None)
    spec = connector(name="wh", sql={"url": url}, tools=["query"])
    tools = {tool.name: tool for tool in await pool.tools([spec])}
    assert list(tools) == ["wh__query"]
    out = await tools["wh__query"].call({"sql": "SELECT count(*) AS n FROM weather"}, CTX)
    assert out == {"columns": ["n"], "rows": [[1461]], "truncated": False}
    await pool.aclose()


async def test_an_unknown_table_names_the_known_ones(weather_db: tuple[str, str]) -> None:
    _, url = weather_db
    with pytest.raises(ConnectorError, match=r"no table 'wether'; tables: .*weather"):
        await sql(url).schema("wether")


async def test_a_missing_sqlite_file_and_an_unreachable_server_fail_clearly(tmp_path: Path) -> None:
    with pytest.raises(ConnectorError, match="no SQLite database at"):
        await sql(f"sqlite:///{tmp_path}/none.db").query("SELECT 1")
    with pytest.raises(ConnectorError, match="cannot connect to the database"):
        await sql("postgresql://nobody@127.0.0.1:1/none").query("SELECT 1")


async def test_the_sqlite_file_is_not_modified(tmp_path: Path) -> None:
    path = tmp_path / "w.db"
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE t (a)")
    conn.close()
    before = path.read_bytes()
    for statement in ("SELECT 1; DROP TABLE t", "ATTACH DATABASE 'x.db' AS x", "PRAGMA writable_schema = 1"):
        with pytest.raises(ConnectorError):
            await sql(f"sqlite:///{path}").query(statement)
    assert path.read_bytes() == before


async def test_structured_values_come_back_as_json(weather_db: tuple[str, str]) -> None:
    kind, url = weather_db
    if kind == "postgresql":
        query = "SELECT json_build_object('rain', 1) AS j, ARRAY[1, 2] AS a, DATE '2015-03-01' AS d"
        expected = [{"rain": 1}, [1, 2], "2015-03-01"]
    else:
        query = "SELECT json_object('rain', 1) AS j, x'0102' AS a, date('2015-03-01') AS d"
        expected = ['{"rain":1}', "base64:AQI=", "2015-03-01"]
    assert (await sql(url).query(query))["rows"] == [expected]
