"""Eval questions over the data sets the analyst ships (vega-datasets), with answers computed
from the data by the pandas code below, never typed by hand.

Each question carries a declarative query; ``expected(question)`` evaluates it with pandas
on the same files the agent gets in its workspace. ``python -m examples.analyst.evals.questions``
prints every question with its computed answer.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import pandas as pd

__all__ = ["QUESTIONS", "Question", "data_dir", "expected", "load"]

Stat = Literal["mean", "sum", "max", "min", "count", "median"]


@dataclass(frozen=True, kw_only=True)
class Question:
    id: str
    text: str
    file: str
    kind: Literal["stat", "best_group", "count"]
    column: str | None = None
    stat: Stat = "mean"
    group_by: str | None = None  # a column, or DATECOL:month / DATECOL:year
    order: Literal["max", "min"] = "max"
    filters: dict[str, Any] = field(default_factory=dict)  # column (or DATECOL:year) -> value
    #: True for questions answered by one aggregation (the quality target for the 0.5B model)
    single: bool = True


QUESTIONS: tuple[Question, ...] = (
    Question(
        id="seattle-rain-month-2015",
        text="Which month of 2015 had the most rain in Seattle, and how much?",
        file="seattle-weather.csv",
        kind="best_group",
        column="precipitation",
        stat="sum",
        group_by="date:month",
        filters={"date:year": 2015},
        single=False,
    ),
    Question(
        id="seattle-max-temp",
        text="What was the highest temp_max recorded in seattle-weather.csv?",
        file="seattle-weather.csv",
        kind="stat",
        column="temp_max",
        stat="max",
    ),
    Question(
        id="seattle-min-temp",
        text="What was the lowest temp_min in seattle-weather.csv?",
        file="seattle-weather.csv",
        kind="stat",
        column="temp_min",
        stat="min",
    ),
    Question(
        id="seattle-mean-wind",
        text="What is the average wind in seattle-weather.csv?",
        file="seattle-weather.csv",
        kind="stat",
        column="wind",
        stat="mean",
    ),
    Question(
        id="seattle-total-precip",
        text="What is the total precipitation in seattle-weather.csv?",
        file="seattle-weather.csv",
        kind="stat",
        column="precipitation",
        stat="sum",
    ),
    Question(
        id="seattle-snow-days",
        text="How many days in seattle-weather.csv have weather equal to snow?",
        file="seattle-weather.csv",
        kind="count",
        filters={"weather": "snow"},
    ),
    Question(
        id="seattle-sunniest-year",
        text="Which year had the most sun days in seattle-weather.csv?",
        file="seattle-weather.csv",
        kind="best_group",
        stat="count",
        group_by="date:year",
        filters={"weather": "sun"},
        single=False,
    ),
    Question(
        id="seattle-windiest-weather",
        text="Which weather type has the highest average wind in Seattle?",
        file="seattle-weather.csv",
        kind="best_group",
        column="wind",
        stat="mean",
        group_by="weather",
    ),
    Question(
        id="cars-mean-hp",
        text="What is the average Horsepower of the cars in cars.json?",
        file="cars.json",
        kind="stat",
        column="Horsepower",
        stat="mean",
    ),
    Question(
        id="cars-max-mpg",
        text="What is the highest Miles_per_Gallon in cars.json?",
        file="cars.json",
        kind="stat",
        column="Miles_per_Gallon",
        stat="max",
    ),
    Question(
        id="cars-best-origin-mpg",
        text="Which Origin has the highest average Miles_per_Gallon in cars.json?",
        file="cars.json",
        kind="best_group",
        column="Miles_per_Gallon",
        stat="mean",
        group_by="Origin",
    ),
    Question(
        id="cars-eight-cyl",
        text="How many cars in cars.json have 8 Cylinders?",
        file="cars.json",
        kind="count",
        filters={"Cylinders": 8},
    ),
    Question(
        id="cars-lightest-origin",
        text="Which Origin has the lowest average Weight_in_lbs in cars.json?",
        file="cars.json",
        kind="best_group",
        column="Weight_in_lbs",
        stat="mean",
        group_by="Origin",
        order="min",
    ),
    Question(
        id="cars-japan-hp",
        text="What is the average Horsepower of cars with Origin Japan in cars.json?",
        file="cars.json",
        kind="stat",
        column="Horsepower",
        stat="mean",
        filters={"Origin": "Japan"},
        single=False,
    ),
    Question(
        id="stocks-max-price",
        text="What is the maximum price in stocks.csv?",
        file="stocks.csv",
        kind="stat",
        column="price",
        stat="max",
    ),
    Question(
        id="stocks-best-symbol",
        text="Which symbol has the highest average price in stocks.csv?",
        file="stocks.csv",
        kind="best_group",
        column="price",
        stat="mean",
        group_by="symbol",
    ),
    Question(
        id="stocks-aapl-max",
        text="What was the maximum price of AAPL in stocks.csv?",
        file="stocks.csv",
        kind="stat",
        column="price",
        stat="max",
        filters={"symbol": "AAPL"},
        single=False,
    ),
    Question(
        id="iris-mean-petal",
        text="What is the average petalLength in iris.json?",
        file="iris.json",
        kind="stat",
        column="petalLength",
        stat="mean",
    ),
    Question(
        id="iris-widest-species",
        text="Which species has the largest average sepalWidth in iris.json?",
        file="iris.json",
        kind="best_group",
        column="sepalWidth",
        stat="mean",
        group_by="species",
    ),
    Question(
        id="barley-best-site",
        text="Which site has the highest total yield in barley.json?",
        file="barley.json",
        kind="best_group",
        column="yield",
        stat="sum",
        group_by="site",
    ),
    Question(
        id="barley-mean-yield",
        text="What is the average yield in barley.json?",
        file="barley.json",
        kind="stat",
        column="yield",
        stat="mean",
    ),
    Question(
        id="airports-tx",
        text="How many airports in airports.csv are in state TX?",
        file="airports.csv",
        kind="count",
        filters={"state": "TX"},
    ),
    Question(
        id="airports-top-state",
        text="Which state has the most airports in airports.csv?",
        file="airports.csv",
        kind="best_group",
        stat="count",
        group_by="state",
    ),
    Question(
        id="iowa-top-source",
        text="Which source has the largest total net_generation in iowa-electricity.csv?",
        file="iowa-electricity.csv",
        kind="best_group",
        column="net_generation",
        stat="sum",
        group_by="source",
    ),
    Question(
        id="wheat-max-price",
        text="What is the highest wheat price in wheat.json?",
        file="wheat.json",
        kind="stat",
        column="wheat",
        stat="max",
    ),
)


def data_dir() -> Path:
    """The data sets, as the vega-datasets wheel ships them."""
    import vega_datasets

    return Path(vega_datasets.__file__).parent / "_data"


def load(name: str, directory: Path | None = None) -> pd.DataFrame:
    path = (directory or data_dir()) / name
    return pd.read_json(path) if path.suffix == ".json" else pd.read_csv(path)


def _key(frame: pd.DataFrame, spec: str) -> pd.Series:
    column, _, part = spec.partition(":")
    if not part:
        return frame[column]
    dates = pd.to_datetime(frame[column])
    return dates.dt.month if part == "month" else dates.dt.year


def expected(question: Question, directory: Path | None = None) -> dict[str, Any]:
    """The answer as ``{"value": number}`` or ``{"group": label, "value": number}``."""
    frame = load(question.file, directory)
    for spec, value in question.filters.items():
        frame = frame[_key(frame, spec) == value]
    if question.kind == "count":
        return {"value": len(frame)}
    if question.kind == "stat":
        assert question.column is not None
        return {"value": float(getattr(frame[question.column], question.stat)())}
    assert question.group_by is not None
    grouped = frame.groupby(_key(frame, question.group_by))
    series = (
        grouped.size() if question.stat == "count" else getattr(grouped[question.column], question.stat)()
    )
    label = series.idxmax() if question.order == "max" else series.idxmin()
    return {"group": label.item() if hasattr(label, "item") else label, "value": float(series[label])}


if __name__ == "__main__":
    for q in QUESTIONS:
        print(json.dumps({"id": q.id, "question": q.text, "answer": expected(q)}))
