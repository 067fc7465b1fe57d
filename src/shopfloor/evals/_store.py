"""Where evaluations are kept: one row per evaluation, one per (item, repeat), in the runtime's database.

An item's row is written when the evaluation is created (pending) and when it is scored (done or broken,
its run id, the case and the metrics), the results of many items in one transaction
(``write_results``). Its run's id is derived from the evaluation, the item and the repeat
(``item_run_id``), so an evaluation that was killed finds each item's run by its id, whether or not
the item's result was written: it never starts a second run for an item that has one, and scores a run
that ended from its record.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import sqlalchemy as sa

from shopfloor.errors import EvalError
from shopfloor.storage import create_tables, insert_ignore, make_engine

__all__ = ["EvalItemRow", "EvalRecord", "EvalStore", "ItemResult", "ItemState", "item_run_id"]

ItemState = Literal["pending", "running", "done", "broken"]

_meta = sa.MetaData()
eval_runs = sa.Table(
    "shopfloor_evals",
    _meta,
    sa.Column("eval_id", sa.String(64), primary_key=True),
    sa.Column("suite", sa.String(128), nullable=False, index=True),
    sa.Column("suite_path", sa.Text, nullable=False),
    sa.Column("suite_digest", sa.String(80), nullable=False),
    sa.Column("dataset_digest", sa.String(80), nullable=False),
    sa.Column("agent", sa.String(128), nullable=False),
    sa.Column("agent_path", sa.Text, nullable=False),
    sa.Column("agent_digest", sa.String(80), nullable=False),
    sa.Column("model", sa.String(256)),
    sa.Column("repeat", sa.Integer, nullable=False),
    sa.Column("executor_id", sa.String(128)),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("config", sa.Text, nullable=False),
    sa.Column("summary", sa.Text),
    sa.Column("created_at", sa.Float, nullable=False, index=True),
    sa.Column("finished_at", sa.Float),
)
eval_items = sa.Table(
    "shopfloor_eval_items",
    _meta,
    sa.Column("eval_id", sa.String(64), primary_key=True),
    sa.Column("item_id", sa.String(256), primary_key=True),
    sa.Column("repeat", sa.Integer, primary_key=True),
    sa.Column("position", sa.Integer, nullable=False),
    sa.Column("item", sa.Text, nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("run_id", sa.String(64)),
    sa.Column("reason", sa.Text),
    sa.Column("case", sa.Text),
    sa.Column("metrics", sa.Text),
    sa.Column("finished_at", sa.Float),
)


def item_run_id(eval_id: str, item_id: str, repeat: int) -> str:
    """The id of the run of ``item_id``'s ``repeat`` in evaluation ``eval_id``: 32 hex digits (a run id
    as ``Runtime.start_run`` accepts one), the same every time it is asked for, another for any other
    (evaluation, item, repeat)."""
    key = json.dumps([eval_id, item_id, repeat], separators=(",", ":")).encode()
    return hashlib.sha256(b"shopfloor-eval-item-run\0" + key).hexdigest()[:32]


def _dump(value: Any) -> str:
    return json.dumps(value, default=str, separators=(",", ":"))


@dataclass(frozen=True, kw_only=True)
class EvalRecord:
    eval_id: str
    suite: str
    suite_path: str
    suite_digest: str
    dataset_digest: str
    agent: str
    agent_path: str
    agent_digest: str
    model: str | None
    repeat: int
    executor_id: str | None
    status: str
    #: the suite's scorers and gates as run, and the options of the run (concurrency, timeout, tags)
    config: dict[str, Any]
    summary: dict[str, Any] | None = None
    created_at: float = 0.0
    finished_at: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self.__dataclass_fields__}


@dataclass(frozen=True, kw_only=True)
class EvalItemRow:
    eval_id: str
    item_id: str
    repeat: int
    position: int
    item: dict[str, Any]
    status: ItemState
    run_id: str | None = None
    reason: str | None = None
    case: dict[str, Any] | None = None
    metrics: list[dict[str, Any]] = field(default_factory=list)
    finished_at: float | None = None

    @property
    def finished(self) -> bool:
        return self.status in ("done", "broken")


@dataclass(frozen=True, kw_only=True)
class ItemResult:
    """What scoring an item writes to its row (``EvalStore.write_results``)."""

    eval_id: str
    item_id: str
    repeat: int
    status: ItemState
    reason: str | None
    #: None where the item broke before its run was started
    run_id: str | None
    case: dict[str, Any] | None
    metrics: list[dict[str, Any]]
    finished_at: float | None

    def params(self) -> dict[str, Any]:
        return {
            "k_eval_id": self.eval_id,
            "k_item_id": self.item_id,
            "k_repeat": self.repeat,
            "v_status": self.status,
            "v_reason": self.reason,
            "v_run_id": self.run_id,
            "v_case": None if self.case is None else _dump(self.case),
            "v_metrics": _dump(self.metrics),
            "v_finished_at": self.finished_at,
        }


_RESULT_COLUMNS = ("status", "reason", "run_id", "case", "metrics", "finished_at")
#: one item's result, its key and values as parameters: executed once per batch with a row per item
_write_result = (
    sa.update(eval_items)
    .where(
        eval_items.c.eval_id == sa.bindparam("k_eval_id"),
        eval_items.c.item_id == sa.bindparam("k_item_id"),
        eval_items.c.repeat == sa.bindparam("k_repeat"),
    )
    .values({name: sa.bindparam(f"v_{name}") for name in _RESULT_COLUMNS})
)


def _record(row: Any) -> EvalRecord:
    data = dict(row)
    data["config"] = json.loads(data["config"])
    data["summary"] = json.loads(data["summary"]) if data["summary"] else None
    return EvalRecord(**data)


def _item_row(row: Any) -> EvalItemRow:
    data = dict(row)
    data["item"] = json.loads(data["item"])
    data["case"] = json.loads(data["case"]) if data["case"] else None
    data["metrics"] = json.loads(data["metrics"]) if data["metrics"] else []
    return EvalItemRow(**data)


class EvalStore:
    """Synchronous; the harness calls it through ``asyncio.to_thread``."""

    def __init__(self, engine: sa.Engine) -> None:
        self.engine = engine
        create_tables(engine, _meta)
        self._insert_items = insert_ignore(engine, eval_items, ["eval_id", "item_id", "repeat"])

    @classmethod
    def open(cls, url: str) -> EvalStore:
        return cls(make_engine(url))

    def close(self) -> None:
        self.engine.dispose()

    def create(self, record: EvalRecord, items: Sequence[tuple[str, int, dict[str, Any]]]) -> None:
        """The evaluation and its (item id, repeat, item) rows, pending, in one transaction."""
        values = record.to_dict()
        values["config"] = _dump(record.config)
        values["summary"] = None
        rows = [
            {
                "eval_id": record.eval_id,
                "item_id": item_id,
                "repeat": rep,
                "position": n,
                "item": _dump(item),
                "status": "pending",
            }
            for n, (item_id, rep, item) in enumerate(items)
        ]
        with self.engine.begin() as conn:
            conn.execute(sa.insert(eval_runs).values(**values))
            if rows:
                conn.execute(self._insert_items, rows)

    def find(self, prefix: str) -> EvalRecord:
        """The evaluation whose id is ``prefix`` or starts with it."""
        with self.engine.connect() as conn:
            query = (
                sa.select(eval_runs).where(eval_runs.c.eval_id.startswith(prefix, autoescape=True)).limit(2)
            )
            rows = conn.execute(query).mappings().all()
        exact = [row for row in rows if row["eval_id"] == prefix]
        if exact or len(rows) == 1:
            return _record((exact or rows)[0])
        if rows:
            raise EvalError(f"{prefix!r} matches more than one evaluation; give more of the id")
        raise EvalError(f"no evaluation {prefix!r}; `shopfloor eval ls` lists them")

    def list_evals(self, *, limit: int = 50, suite: str | None = None) -> list[EvalRecord]:
        query = sa.select(eval_runs).order_by(eval_runs.c.created_at.desc()).limit(limit)
        if suite:
            query = query.where(eval_runs.c.suite == suite)
        with self.engine.connect() as conn:
            return [_record(row) for row in conn.execute(query).mappings()]

    def update(self, eval_id: str, **values: Any) -> None:
        for key in ("config", "summary"):
            if key in values and values[key] is not None:
                values[key] = _dump(values[key])
        with self.engine.begin() as conn:
            conn.execute(sa.update(eval_runs).where(eval_runs.c.eval_id == eval_id).values(**values))

    def items(self, eval_id: str) -> list[EvalItemRow]:
        query = sa.select(eval_items).where(eval_items.c.eval_id == eval_id).order_by(eval_items.c.position)
        with self.engine.connect() as conn:
            return [_item_row(row) for row in conn.execute(query).mappings()]

    def write_results(self, results: Sequence[ItemResult]) -> None:
        """The results of many items, in one transaction (one ``executemany``), where writing each in a
        commit of its own cost the harness a commit per item."""
        if results:
            with self.engine.begin() as conn:
                conn.execute(_write_result, [result.params() for result in results])

    def update_item(self, eval_id: str, item_id: str, repeat: int, **values: Any) -> None:
        for key in ("case", "metrics", "item"):
            if key in values and values[key] is not None:
                values[key] = _dump(values[key])
        key_match = sa.and_(
            eval_items.c.eval_id == eval_id, eval_items.c.item_id == item_id, eval_items.c.repeat == repeat
        )
        with self.engine.begin() as conn:
            conn.execute(sa.update(eval_items).where(key_match).values(**values))
