"""data-analysis: one narrow operation over one data file of the workspace, JSON in, JSON out.

Run as ``analyze.py`` (arguments on stdin, result on stdout) or ``analyze.py schema`` (stdin
``{"stage": N, "chosen": {...}}``, stdout the JSON Schema of the next arguments, or null): the
schema mode derives the choices from the data, so a small model can only ask for what makes sense.
With ``"plan": true`` the schema mode answers every stage at once, for every operation and file
(a ``shopfloor-schema-plan/1``): one run instead of one per stage.
"""

from __future__ import annotations

import functools
import json
import math
import re
import sys
from pathlib import Path
from typing import Any

import pandas as pd

DATA_SUFFIXES = (".csv", ".tsv", ".json", ".jsonl", ".parquet")
OPS = ["==", "!=", ">", ">=", "<", "<=", "contains"]
# In the order a small model should consider them, each with a one-line example.
OPERATIONS = {
    "best_group": "which group has the highest or lowest value (e.g. the month with the most rain)",
    "column_stat": "one number about a column: average, total, highest, lowest (e.g. the average price)",
    "count_rows": "how many rows, days or items (e.g. how many days had snow)",
    "group_aggregate": "a statistic for every group, as a table (e.g. total rain per month)",
    "describe": "the columns, types and summary statistics of a file",
    "filter": "the rows where a column has a value",
    "correlation": "Pearson correlation between two numeric columns",
    "regression": "linear regression y = slope * x + intercept",
    "chart": "draw a PNG chart into the workspace",
}
# Words of a question that point to an option (``x-keywords``: the runtime shows those options
# first, since small models lean towards the first option they see).
KEYWORDS: dict[str, dict[str, list[str]]] = {
    "operation": {
        "best_group": ["which", "has the", "had the", "have the"],
        "column_stat": ["average", "mean", "total", "highest", "lowest", "maximum", "minimum", "median"],
        "count_rows": ["how many", "number of"],
        "group_aggregate": ["per", "each", "every"],
        "correlation": ["correlat", "relationship"],
        "regression": ["regression", "trend", "slope"],
        "chart": ["chart", "plot", "graph"],
        "describe": ["describe", "columns", "summary"],
    },
    "stat": {
        "sum": ["total", "most", "amount", "much"],
        "mean": ["average", "mean", "typical"],
        "max": ["highest", "maximum", "largest", "biggest", "record"],
        "min": ["lowest", "minimum", "smallest", "least", "coldest"],
        "count": ["how many", "number of", "count", "days"],
        "median": ["median"],
    },
    "order": {
        "max": ["most", "highest", "largest", "biggest", "top", "maximum"],
        "min": ["least", "lowest", "smallest", "fewest", "minimum"],
    },
}
STAT_ORDER = ["sum", "mean", "max", "min", "count", "median", "std", "nunique"]
#: operations whose result answers a question: they also write report.md and a chart
REPORTED = ("column_stat", "best_group", "count_rows", "group_aggregate")
MONTHS = (
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
)
NEEDS = {
    "describe": [],
    "column_stat": ["column", "stat"],
    "count_rows": [],
    "best_group": ["group_by", "column", "stat", "order"],
    "group_aggregate": ["group_by", "column", "stat"],
    "filter": ["where"],
    "correlation": ["x", "y"],
    "regression": ["x", "y"],
    "chart": ["kind", "x", "y"],
}
DATE_PARTS = ("year", "month", "day", "weekday", "quarter")


def data_files() -> list[str]:
    root = Path(".")
    return sorted(
        str(p)
        for p in root.rglob("*")
        if p.is_file() and p.suffix.lower() in DATA_SUFFIXES and "/." not in f"/{p}"
    )


def load(file: str) -> pd.DataFrame:
    path = Path(file)
    if not path.is_file() or path.is_absolute() or ".." in path.parts:
        raise ValueError(
            f"no data file {file!r} in the workspace; files: {', '.join(data_files()) or 'none'}"
        )
    suffix = path.suffix.lower()
    if suffix == ".parquet":
        frame = pd.read_parquet(path)
    elif suffix in (".json", ".jsonl"):
        frame = pd.read_json(path, lines=suffix == ".jsonl")
    else:
        frame = pd.read_csv(path, sep="\t" if suffix == ".tsv" else ",")
    for name in frame.columns:
        if pd.api.types.is_string_dtype(frame[name]) and _looks_like_dates(frame[name]):
            frame[name] = pd.to_datetime(frame[name], errors="coerce")
    return frame


def _looks_like_dates(series: pd.Series) -> bool:
    sample = series.dropna().astype(str).head(20)
    if sample.empty or not sample.str.match(r"^\d{4}[-/]\d{2}[-/]\d{2}").all():
        return False
    return bool(pd.to_datetime(sample, errors="coerce").notna().all())


def column(frame: pd.DataFrame, name: str) -> pd.Series:
    """A column, or a part of a date column written ``date.month``."""
    if name in frame.columns:
        return frame[name]
    base, _, part = name.rpartition(".")
    if base in frame.columns and part in DATE_PARTS and pd.api.types.is_datetime64_any_dtype(frame[base]):
        values = frame[base].dt.isocalendar().week if part == "week" else getattr(frame[base].dt, part)
        return values.rename(name)
    raise ValueError(f"no column {name!r}; columns: {', '.join(map(str, frame.columns))}")


def numeric_columns(frame: pd.DataFrame) -> list[str]:
    return [
        str(c) for c in frame.columns if pd.api.types.is_numeric_dtype(frame[c]) and frame[c].dtype != bool
    ]


def group_columns(frame: pd.DataFrame) -> list[str]:
    names = []
    for c in frame.columns:
        series = frame[c]
        if pd.api.types.is_datetime64_any_dtype(series):
            names += [f"{c}.{part}" for part in DATE_PARTS]
        elif not pd.api.types.is_float_dtype(series) and series.nunique() <= max(50, len(series) // 20):
            names.append(str(c))
    return names


def where_of(request: dict[str, Any]) -> dict[str, Any] | None:
    """The filter of a request: ``where``, ``where_match`` ("COLUMN == VALUE") or the flat
    ``where_column``/``where_value`` ('none': no filter)."""
    if request.get("where"):
        return dict(request["where"])
    match = request.get("where_match")
    if match and match != "none":
        name, _, value = str(match).partition(" == ")
        return {"column": name, "op": "==", "value": _typed(value)}
    name = request.get("where_column")
    if not name or name == "none":
        return None
    return {"column": name, "op": "==", "value": request.get("where_value")}


def _typed(text: str) -> Any:
    """A value as written in a where_match condition: a number where it reads as one."""
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def apply_where(frame: pd.DataFrame, where: dict[str, Any] | None) -> pd.DataFrame:
    if not where:
        return frame
    series, op, value = column(frame, where["column"]), where["op"], where["value"]
    if pd.api.types.is_numeric_dtype(series) and isinstance(value, str) and op != "contains":
        value = float(value)
    masks = {
        "==": lambda: series == value,
        "!=": lambda: series != value,
        ">": lambda: series > value,
        ">=": lambda: series >= value,
        "<": lambda: series < value,
        "<=": lambda: series <= value,
        "contains": lambda: series.astype(str).str.contains(str(value), case=False, regex=False),
    }
    return frame[masks[op]()]


def clean(value: Any) -> Any:
    """JSON-safe scalars: numpy numbers to Python, NaN to None, floats rounded for reading."""
    if hasattr(value, "item"):
        value = value.item()
    if isinstance(value, float):
        return None if math.isnan(value) else round(value, 6)
    if isinstance(value, pd.Timestamp):
        return value.isoformat()
    return value


def stat_of(series: pd.Series, stat: str) -> Any:
    if stat not in ("count", "nunique") and not pd.api.types.is_numeric_dtype(series):
        raise ValueError(f"{stat} needs a numeric column; {series.name!r} is not numeric")
    return clean(getattr(series, stat)())


def _describe(frame: pd.DataFrame, args: dict[str, Any]) -> dict[str, Any]:
    columns = []
    for name in frame.columns:
        s = frame[name]
        info: dict[str, Any] = {"name": str(name), "type": str(s.dtype), "missing": int(s.isna().sum())}
        if pd.api.types.is_numeric_dtype(s):
            info.update({k: clean(getattr(s, k)()) for k in ("mean", "min", "max")})
        elif pd.api.types.is_datetime64_any_dtype(s):
            info.update({"min": clean(s.min()), "max": clean(s.max())})
        else:
            info["top"] = [clean(v) for v in s.value_counts().head(5).index]
        columns.append(info)
    return {"rows": len(frame), "columns": columns, "answer": f"{len(frame)} rows, {len(columns)} columns"}


def _scope(args: dict[str, Any]) -> str:
    where = where_of(args)
    return f" where {where['column']} {where['op']} {where['value']}" if where else ""


def _label(group_by: str, key: Any) -> str:
    if group_by.endswith(".month") and isinstance(key, int) and 1 <= key <= 12:
        return f"{MONTHS[key - 1]} ({key})"
    return str(key)


def _column_stat(frame: pd.DataFrame, args: dict[str, Any]) -> dict[str, Any]:
    series = column(frame, args["column"])
    value = stat_of(series, args["stat"])
    # Check the figure by a second computation path (plain Python over the values).
    values = [float(v) for v in series.dropna()] if pd.api.types.is_numeric_dtype(series) else []
    second = {
        "sum": sum(values),
        "max": max(values, default=None),
        "min": min(values, default=None),
        "mean": sum(values) / len(values) if values else None,
        "count": len(values),
    }.get(args["stat"])
    checked = second is None or value is None or math.isclose(float(second), float(value), rel_tol=1e-6)
    answer = f"The {args['stat']} of {args['column']} in {args['file']}{_scope(args)} is {value}"
    return {"value": value, "rows": len(frame), "checked": checked, "answer": answer}


def _count_rows(frame: pd.DataFrame, args: dict[str, Any]) -> dict[str, Any]:
    answer = f"{args['file']} has {len(frame)} rows{_scope(args)}"
    return {"count": len(frame), "checked": True, "answer": answer}


def _grouped(frame: pd.DataFrame, args: dict[str, Any]) -> pd.Series:
    keys = column(frame, args["group_by"])
    values = column(frame, args["column"])
    if args["stat"] not in ("count", "nunique") and not pd.api.types.is_numeric_dtype(values):
        raise ValueError(f"{args['stat']} needs a numeric column; {args['column']!r} is not numeric")
    return values.groupby(keys).agg(args["stat"])


def _best_group(frame: pd.DataFrame, args: dict[str, Any]) -> dict[str, Any]:
    grouped = _grouped(frame, args).dropna()
    if grouped.empty:
        raise ValueError("no rows left to group; check the where condition")
    key = grouped.idxmax() if args["order"] == "max" else grouped.idxmin()
    value = clean(grouped[key])
    # Check by sorting the whole table: its first row must be the same group.
    ordered = grouped.sort_values(ascending=args["order"] == "min")
    checked = bool(clean(ordered.iloc[0]) == value)
    what = "highest" if args["order"] == "max" else "lowest"
    label = _label(args["group_by"], clean(key))
    measure = f"{args['stat']} of {args['column']} by {args['group_by']}{_scope(args)}"
    answer = f"{label} has the {what} {measure}: {value}"
    table = [{"group": clean(k), "value": clean(v)} for k, v in grouped.items()]
    return {
        "group": clean(key),
        "value": value,
        "groups": len(grouped),
        "checked": checked,
        "answer": answer,
        "_rows": table,
    }


def _group_aggregate(frame: pd.DataFrame, args: dict[str, Any]) -> dict[str, Any]:
    grouped = _grouped(frame, args).sort_values(ascending=False).head(int(args.get("limit", 50)))
    rows = [{"group": clean(k), "value": clean(v)} for k, v in grouped.items()]
    top = f"; the largest is {_label(args['group_by'], rows[0]['group'])}: {rows[0]['value']}" if rows else ""
    answer = (
        f"{args['stat']} of {args['column']} for {len(rows)} groups of {args['group_by']}{_scope(args)}{top}"
    )
    result: dict[str, Any] = {"groups": rows, "_rows": rows, "answer": answer}
    if args.get("save_table"):
        grouped.rename(f"{args['stat']}_{args['column']}").to_csv(_output(args["save_table"], ".csv"))
        result["table"] = args["save_table"]
    return result


def _filter(frame: pd.DataFrame, args: dict[str, Any]) -> dict[str, Any]:
    limit = int(args.get("limit", 20))
    rows = json.loads(frame.head(limit).to_json(orient="records", date_format="iso"))
    result: dict[str, Any] = {"count": len(frame), "rows": rows, "answer": f"{len(frame)} matching rows"}
    if args.get("save_table"):
        frame.to_csv(_output(args["save_table"], ".csv"), index=False)
        result["table"] = args["save_table"]
    return result


def _pair(frame: pd.DataFrame, args: dict[str, Any]) -> tuple[pd.Series, pd.Series]:
    x, y = column(frame, args["x"]), column(frame, args["y"])
    for s in (x, y):
        if not pd.api.types.is_numeric_dtype(s):
            raise ValueError(f"{s.name!r} is not numeric")
    both = pd.concat([x, y], axis=1).dropna()
    if len(both) < 2:
        raise ValueError("fewer than two rows with both values")
    return both.iloc[:, 0], both.iloc[:, 1]


def _correlation(frame: pd.DataFrame, args: dict[str, Any]) -> dict[str, Any]:
    x, y = _pair(frame, args)
    r = clean(x.corr(y))
    return {"pearson_r": r, "n": len(x), "answer": f"correlation of {args['x']} and {args['y']}: r = {r}"}


def _regression(frame: pd.DataFrame, args: dict[str, Any]) -> dict[str, Any]:
    x, y = _pair(frame, args)
    mx, my = x.mean(), y.mean()
    sxx = ((x - mx) ** 2).sum()
    if sxx == 0:
        raise ValueError(f"{args['x']!r} is constant; no regression line")
    slope = ((x - mx) * (y - my)).sum() / sxx
    intercept = my - slope * mx
    ss_res = ((y - (slope * x + intercept)) ** 2).sum()
    ss_tot = ((y - my) ** 2).sum()
    r2 = 1 - ss_res / ss_tot if ss_tot else 1.0
    s, i, r = clean(slope), clean(intercept), clean(r2)
    answer = f"{args['y']} = {s} * {args['x']} + {i} (R^2 = {r}, n = {len(x)})"
    return {"slope": s, "intercept": i, "r2": r, "n": len(x), "answer": answer}


def _chart(frame: pd.DataFrame, args: dict[str, Any]) -> dict[str, Any]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    kind, out = args["kind"], _output(args.get("output") or f"charts/{args['y']}_by_{args['x']}.png", ".png")
    fig, ax = plt.subplots(figsize=(8, 4.5))
    x, y = column(frame, args["x"]), column(frame, args["y"])
    if kind == "hist":
        y.dropna().plot.hist(ax=ax, bins=int(args.get("bins", 20)))
    elif kind == "scatter":
        ax.scatter(x, y, s=8)
    else:
        series = (
            y.groupby(x).agg(args.get("stat", "mean")) if args.get("stat") else pd.Series(y.values, index=x)
        )
        series.plot(ax=ax, kind="bar" if kind == "bar" else "line")
    ax.set_xlabel(args["x"])
    ax.set_ylabel(args["y"])
    ax.set_title(args.get("title") or f"{args['y']} by {args['x']}")
    fig.tight_layout()
    fig.savefig(out, dpi=100)
    return {"chart": str(out), "answer": f"chart written to {out}"}


def _output(path: str, suffix: str) -> Path:
    out = Path(path)
    if out.is_absolute() or ".." in out.parts:
        raise ValueError(f"output {path!r} must be a relative path inside the workspace")
    out = out if out.suffix.lower() == suffix else out.with_suffix(suffix)
    out.parent.mkdir(parents=True, exist_ok=True)
    return out


RUN = {
    "describe": _describe,
    "column_stat": _column_stat,
    "count_rows": _count_rows,
    "best_group": _best_group,
    "group_aggregate": _group_aggregate,
    "filter": _filter,
    "correlation": _correlation,
    "regression": _regression,
    "chart": _chart,
}


@functools.cache
def schema_frame(file: str) -> pd.DataFrame:
    """A file as the schema mode reads it: loaded once per run, never changed."""
    return load(file)


def _file_line(name: str) -> str:
    try:
        columns = ", ".join(map(str, schema_frame(name).columns))
    except (ValueError, OSError) as exc:
        columns = f"unreadable: {exc}"
    return f"{name} (columns: {columns})"


def _enum(name: str, values: list[Any], description: str) -> dict[str, Any]:
    prop: dict[str, Any] = {"enum": values}
    if name in KEYWORDS:
        prop["x-keywords"] = KEYWORDS[name]
    return {
        "type": "object",
        "properties": {name: prop},
        "required": [name],
        "additionalProperties": False,
        "description": description,
    }


def _operation_args(operation: str, frame: pd.DataFrame) -> dict[str, Any] | None:
    """The arguments an operation needs, with choices taken from the file's own columns."""
    numeric, groups = numeric_columns(frame), group_columns(frame)
    everything = [str(c) for c in frame.columns]
    anything = numeric + [c for c in everything if c not in numeric]
    props: dict[str, Any] = {
        "stat": {"enum": STAT_ORDER, "x-keywords": KEYWORDS["stat"]},
        "column": {"enum": numeric or everything},
        "group_by": {"enum": groups or everything, "x-keywords": _date_words(groups)},
        "order": {"enum": ["max", "min"], "x-keywords": KEYWORDS["order"]},
        "x": {"enum": numeric or everything},
        "y": {"enum": numeric or everything},
        "kind": {"enum": ["bar", "line", "scatter", "hist"]},
    }
    needed = [n for n in NEEDS[operation] if n != "where"]
    if operation == "best_group":
        needed = ["group_by", "stat", "column", "order"]
        props["column"] = {"enum": anything}  # a count of rows may name any column
    if operation == "chart":
        needed = ["kind", "x", "y"]
    if not needed:
        return None
    return {
        "type": "object",
        "properties": {name: props[name] for name in needed},
        "required": needed,
        "additionalProperties": False,
        "description": f"The arguments of {operation} ({OPERATIONS[operation]}): "
        "stat is the statistic, column the numbers it is taken of, group_by what the groups are "
        "(date.month for months, date.year for years), "
        "order max for the highest or most, min for the lowest.",
    }


def _date_words(groups: list[str]) -> dict[str, list[str]]:
    words = {
        "year": ["year", "annual"],
        "month": ["month", "monthly"],
        "weekday": ["weekday", "day of the week"],
    }
    return {g: words[g.rpartition(".")[2]] for g in groups if g.rpartition(".")[2] in words}


def _names(text: str, task: str) -> bool:
    """Whether the task names a text value: as a word, and in its own case where it is a short
    code (TX, IN), so that "in" or "us" in a sentence names no state."""
    if len(text) <= 3 and text.isupper():
        return re.search(rf"\b{re.escape(text)}\b", task) is not None
    return re.search(rf"\b{re.escape(text.lower())}\b", task.lower()) is not None


def mentioned_values(frame: pd.DataFrame, groups: list[str], task: str) -> dict[str, list[Any]]:
    """The values of each filter column that the task names: text values as words, four-digit
    years, and other numbers only where the task also names the column ("8 Cylinders")."""
    words = set(re.findall(r"[a-z0-9]+", task.lower()))
    lowered = task.lower()
    found: dict[str, list[Any]] = {}
    for name in groups:
        values = column(frame, name).dropna().unique()
        if len(values) > 500:
            continue
        named = name.lower().rpartition(".")[2] in words or name.lower() in lowered
        hits = []
        for value in values:
            text = str(clean(value))
            if isinstance(clean(value), (int, float)):
                if text in words and (len(text) == 4 or named):
                    hits.append(clean(value))
            elif len(text) >= 2 and _names(text, task):
                hits.append(clean(value))
        if hits:
            found[name] = hits
    return found


def next_schema(stage: int, chosen: dict[str, Any], task: str = "") -> dict[str, Any] | None:
    """Stages, each one narrow choice: the operation; the file; that operation's arguments from the
    file's columns; then, only where the task names values found in the data (2015, Japan, snow),
    the filter column and its value among those named."""
    if stage == 0:
        described = "; ".join(f"{name}: {text}" for name, text in OPERATIONS.items())
        return _enum("operation", list(OPERATIONS), f"Which operation answers the task? {described}")
    if stage == 1:
        words = set(re.findall(r"[a-z0-9]+", task.lower()))
        # Files whose names the task uses come first, in the list and in the description.
        files = sorted(data_files(), key=lambda f: -len(set(re.findall(r"[a-z0-9]+", f.lower())) & words))
        files = files or ["(no data files)"]
        lines = "; ".join(_file_line(f) for f in files)
        return _enum("file", files, f"Which file has the data for the task? {lines}")
    operation = chosen.get("operation")
    if operation not in NEEDS or operation == "describe":
        return None
    frame = schema_frame(chosen["file"])
    mentioned = mentioned_values(frame, group_columns(frame), task)
    steps: list[str] = []
    if operation != "filter" and _operation_args(operation, frame) is not None:
        steps.append("args")
    if mentioned or operation == "filter":
        steps.append("where_match")
    index = stage - 2
    if index >= len(steps):
        return None
    if steps[index] == "args":
        return _operation_args(operation, frame)
    # One concrete choice, in the words of the task: "date.year == 2015", "weather == snow", or none.
    # Years first: a year named in a question nearly always selects rows.
    pairs = [(name, value) for name, values in mentioned.items() for value in values]
    pairs.sort(key=lambda p: not (isinstance(p[1], int) and 1000 <= p[1] <= 2999))
    # No "none": the task names these values, and small models otherwise skip the filter it asks for.
    options = [f"{name} == {value}" for name, value in pairs] or ["none"]
    return _enum(
        "where_match",
        options,
        "The task names these values of the data: which condition selects the rows it asks about?",
    )


def schema_plan(task: str) -> dict[str, Any]:
    """Every stage's schema for this task: the first two for all, the others for each operation and
    file (``when``), ending with null where the arguments are complete."""
    stages: list[dict[str, Any]] = [
        {"stage": stage, "when": {}, "schema": next_schema(stage, {}, task)} for stage in (0, 1)
    ]
    for file in data_files():
        for operation in OPERATIONS:
            chosen = {"operation": operation, "file": file}
            for stage in range(2, 10):  # next_schema ends each with null well before
                try:
                    schema = next_schema(stage, chosen, task)
                except (ValueError, OSError):
                    break  # an unreadable file: its stage runs on its own and reports the error
                stages.append({"stage": stage, "when": chosen, "schema": schema})
                if schema is None:
                    break
    return {"format": "shopfloor-schema-plan/1", "stages": stages}


def write_report(request: dict[str, Any], result: dict[str, Any]) -> dict[str, Any]:
    """report.md (and a bar chart of the groups, where there are groups) for a result that answers
    a question; the workspace commit of the step keeps each version."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    args = {k: v for k, v in request.items() if k not in ("operation", "file")}
    lines = [
        "# Analysis report",
        "",
        f"**{result['answer']}**",
        "",
        f"- data: `{request['file']}`",
        f"- operation: `{request['operation']}` with `{json.dumps(args, sort_keys=True)}`",
        f"- checked by a second computation: {'yes' if result.get('checked') else 'no'}",
    ]
    table = result.get("_rows") or []
    written: dict[str, Any] = {"report": "report.md"}
    if table:
        group_by, column_name = request.get("group_by", "group"), request.get("column", "value")
        chart = _output(f"charts/{request.get('stat', 'value')}_{column_name}_by_{group_by}.png", ".png")
        fig, ax = plt.subplots(figsize=(8, 4.5))
        labels = [_label(group_by, row["group"]) for row in table][:40]
        values = [row["value"] if row["value"] is not None else 0 for row in table][:40]
        colours = ["#d62728" if row["group"] == result.get("group") else "#1f77b4" for row in table][:40]
        ax.bar(range(len(values)), values, color=colours)
        ax.set_xticks(range(len(values)), labels, rotation=60, ha="right", fontsize=8)
        ax.set_ylabel(f"{request.get('stat')} of {column_name}")
        ax.set_title(f"{request.get('stat')} of {column_name} by {group_by}{_scope(request)}")
        fig.tight_layout()
        fig.savefig(chart, dpi=100)
        plt.close(fig)
        written["chart"] = str(chart)
        lines += [
            "",
            f"![{column_name} by {group_by}]({chart})",
            "",
            f"| {group_by} | {column_name} |",
            "|---|---|",
        ]
        lines += [f"| {_label(group_by, row['group'])} | {row['value']} |" for row in table[:60]]
    Path("report.md").write_text("\n".join(lines) + "\n")
    return written


def main() -> None:
    request = json.load(sys.stdin)
    if sys.argv[1:] == ["schema"] and request.get("plan"):
        print(json.dumps(schema_plan(request.get("task", ""))))
        return
    if sys.argv[1:] == ["schema"]:
        schema = next_schema(int(request["stage"]), request.get("chosen", {}), request.get("task", ""))
        print(json.dumps(schema))
        return
    try:
        frame = apply_where(load(request["file"]), where_of(request))
        result = RUN[request["operation"]](frame, request)
        if request["operation"] in REPORTED:
            result.update(write_report(request, result))
    except (ValueError, KeyError, TypeError) as exc:
        # The model reads this and retries with other arguments: say what was wrong, briefly.
        print(f"{request.get('operation')}: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    result.pop("_rows", None)
    print(json.dumps({"operation": request["operation"], "file": request["file"], **result}, default=str))


if __name__ == "__main__":
    main()
