"""data-analysis: one narrow operation over one data file of the workspace, JSON in, JSON out.

Run as ``analyze.py`` (arguments on stdin, result on stdout) or ``analyze.py schema`` (stdin
``{"stage": N, "chosen": {...}}``, stdout the JSON Schema of the next arguments, or null): the
schema mode derives the choices from the data, so a small model can only ask for what makes sense.
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path
from typing import Any

import pandas as pd

DATA_SUFFIXES = (".csv", ".tsv", ".json", ".jsonl", ".parquet")
STATS = ["mean", "median", "sum", "min", "max", "std", "count", "nunique"]
OPS = ["==", "!=", ">", ">=", "<", "<=", "contains"]
OPERATIONS = {
    "describe": "columns, types and summary statistics of the file",
    "column_stat": "one statistic of one column, e.g. the mean of price",
    "count_rows": "how many rows (optionally matching a condition)",
    "best_group": "the group with the highest or lowest statistic, e.g. the month with the most rain",
    "group_aggregate": "a statistic per group, as a table",
    "filter": "the rows matching a condition",
    "correlation": "Pearson correlation between two numeric columns",
    "regression": "linear regression y = slope * x + intercept",
    "chart": "draw a PNG chart into the workspace",
}
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
        if frame[name].dtype == object and _looks_like_dates(frame[name]):
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


def _column_stat(frame: pd.DataFrame, args: dict[str, Any]) -> dict[str, Any]:
    value = stat_of(column(frame, args["column"]), args["stat"])
    return {"value": value, "rows": len(frame), "answer": f"{args['stat']} of {args['column']} = {value}"}


def _count_rows(frame: pd.DataFrame, args: dict[str, Any]) -> dict[str, Any]:
    return {"count": len(frame), "answer": f"{len(frame)} rows"}


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
    what = "highest" if args["order"] == "max" else "lowest"
    answer = f"{args['group_by']} = {clean(key)} has the {what} {args['stat']} of {args['column']}: {value}"
    return {"group": clean(key), "value": value, "groups": len(grouped), "answer": answer}


def _group_aggregate(frame: pd.DataFrame, args: dict[str, Any]) -> dict[str, Any]:
    grouped = _grouped(frame, args).sort_values(ascending=False).head(int(args.get("limit", 50)))
    rows = [{"group": clean(k), "value": clean(v)} for k, v in grouped.items()]
    result: dict[str, Any] = {"groups": rows, "answer": f"{len(rows)} groups of {args['group_by']}"}
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


def next_schema(stage: int, chosen: dict[str, Any]) -> dict[str, Any] | None:
    """Stage 0: the operation and the file; stage 1: that operation's arguments, from the file's columns."""
    if stage == 0:
        described = [f"{name}: {text}" for name, text in OPERATIONS.items()]
        return {
            "type": "object",
            "properties": {
                "operation": {"enum": list(OPERATIONS), "description": "; ".join(described)},
                "file": {"enum": data_files() or ["(no data files)"]},
            },
            "required": ["operation", "file"],
            "additionalProperties": False,
        }
    if stage > 1 or chosen.get("operation") not in NEEDS or chosen["operation"] == "describe":
        return None
    frame = load(chosen["file"])
    numeric, groups = numeric_columns(frame), group_columns(frame)
    everything = [str(c) for c in frame.columns] + [g for g in groups if g not in frame.columns]
    props: dict[str, Any] = {
        "column": {"enum": numeric or everything},
        "stat": {"enum": STATS},
        "group_by": {"enum": groups or everything},
        "order": {"enum": ["max", "min"]},
        "x": {"enum": numeric or everything},
        "y": {"enum": numeric or everything},
        "kind": {"enum": ["bar", "line", "scatter", "hist"]},
        "where": where_schema(everything),
    }
    needed = NEEDS[chosen["operation"]]
    properties = {name: props[name] for name in needed}
    if "where" not in properties:
        properties["where"] = props["where"]
    return {"type": "object", "properties": properties, "required": needed, "additionalProperties": False}


def where_schema(columns: list[str]) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": {
            "column": {"enum": columns},
            "op": {"enum": OPS},
            "value": {"type": ["string", "number"]},
        },
        "required": ["column", "op", "value"],
        "additionalProperties": False,
    }


def main() -> None:
    request = json.load(sys.stdin)
    if sys.argv[1:] == ["schema"]:
        print(json.dumps(next_schema(int(request["stage"]), request.get("chosen", {}))))
        return
    try:
        frame = apply_where(load(request["file"]), request.get("where"))
        result = RUN[request["operation"]](frame, request)
    except (ValueError, KeyError, TypeError) as exc:
        # The model reads this and retries with other arguments: say what was wrong, briefly.
        print(f"{request.get('operation')}: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    print(json.dumps({"operation": request["operation"], "file": request["file"], **result}, default=str))


if __name__ == "__main__":
    main()
