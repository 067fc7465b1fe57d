"""The run store: one row per run, its events, and the executors that run them.

SQLAlchemy Core over ``settings.db_url`` (SQLite by default, PostgreSQL when
configured). A run's row is written when it is created, when it starts, when it
waits for and gets an approval, and when it ends; never once per step, so the
only synchronous write per step is DBOS's own record of that step. Events are
appended in batches (see ``_events``) with insert-or-ignore on (run id, seq),
which makes re-emitting them during recovery harmless.
"""

from __future__ import annotations

import json
import operator
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, fields
from typing import Any, Literal

import sqlalchemy as sa

from shopfloor._json import COMPACT
from shopfloor.errors import RunNotFoundError
from shopfloor.storage import add_columns, create_tables, insert_ignore, make_engine, reader

__all__ = ["RunRecord", "RunState", "RunStore", "Track"]

RunState = Literal["queued", "running", "waiting_approval", "completed", "failed", "cancelled"]
#: which side of its deployment's canary a run started on
Track = Literal["stable", "candidate"]
TERMINAL: frozenset[str] = frozenset({"completed", "failed", "cancelled"})
#: ids a ``get_many`` query carries at most (SQLite before 3.32 binds at most 999 parameters)
_MANY = 500

_meta = sa.MetaData()
runs = sa.Table(
    "shopfloor_runs",
    _meta,
    sa.Column("run_id", sa.String(64), primary_key=True),
    sa.Column("agent", sa.String(128), nullable=False, index=True),
    sa.Column("spec_path", sa.Text, nullable=False),
    sa.Column("release_digest", sa.String(80), nullable=False),
    sa.Column("release", sa.String(200)),
    sa.Column("track", sa.String(16)),
    sa.Column("caller", sa.String(256), nullable=False),
    sa.Column("status", sa.String(32), nullable=False, index=True),
    sa.Column("task", sa.Text, nullable=False),
    sa.Column("model", sa.String(256)),
    sa.Column("parent_run_id", sa.String(64)),
    sa.Column("fork_step", sa.Integer),
    sa.Column("child_params", sa.Text),
    sa.Column("output", sa.Text),
    sa.Column("stop_reason", sa.String(32)),
    sa.Column("error", sa.Text),
    sa.Column("input_tokens", sa.Integer, nullable=False, default=0),
    sa.Column("output_tokens", sa.Integer, nullable=False, default=0),
    sa.Column("model_calls", sa.Integer, nullable=False, default=0),
    sa.Column("steps", sa.Integer, nullable=False, default=0),
    sa.Column("faults", sa.Text),
    sa.Column("approval", sa.Text),
    sa.Column("executor_id", sa.String(128)),
    sa.Column("workspace_commit", sa.String(80)),
    sa.Column("pruned", sa.Boolean, nullable=False, default=False),
    sa.Column("created_at", sa.Float, nullable=False, index=True),
    sa.Column("started_at", sa.Float),
    sa.Column("finished_at", sa.Float),
)
#: a run's children (and forks) by their parent: ``RunStore.children``
_by_parent = sa.Index("ix_shopfloor_runs_parent_run_id", runs.c.parent_run_id)
events = sa.Table(
    "shopfloor_run_events",
    _meta,
    sa.Column("run_id", sa.String(64), primary_key=True),
    sa.Column("seq", sa.Integer, primary_key=True),
    sa.Column("kind", sa.String(32), nullable=False),
    sa.Column("step", sa.Integer, nullable=False),
    sa.Column("data", sa.Text, nullable=False),
    sa.Column("at", sa.Float, nullable=False),
)
executors = sa.Table(
    "shopfloor_executors",
    _meta,
    sa.Column("executor_id", sa.String(128), primary_key=True),
    sa.Column("role", sa.String(16), nullable=False),
    sa.Column("pid", sa.Integer, nullable=False),
    sa.Column("host", sa.String(256), nullable=False),
    sa.Column("started_at", sa.Float, nullable=False),
    sa.Column("last_seen", sa.Float, nullable=False),
    sa.Column("stopped", sa.Boolean, nullable=False, default=False),
)


@dataclass(frozen=True, kw_only=True)
class RunRecord:
    """A run as the store knows it (``status`` is the run's, not DBOS's)."""

    run_id: str
    agent: str
    spec_path: str
    release_digest: str
    caller: str
    status: RunState
    task: str
    #: ``NAME@VERSION`` where the run was started on a deployed release (None: a spec started directly)
    release: str | None = None
    #: the deployment's track that release was on when the run started
    track: Track | None = None
    model: str | None = None
    #: a fork: the run it was forked from, whose recorded outputs its steps before ``fork_step`` are
    parent_run_id: str | None = None
    #: a fork: the 1-based step of the parent's record from which it ran live
    fork_step: int | None = None
    #: a child run (its parent is ``parent_run_id``): what it does, ``{"tool", "params", "step",
    #: "workspace", "branch_from"}`` (``runtime/_children.py``); None for any other run
    child_params: dict[str, Any] | None = None
    output: str | None = None
    stop_reason: str | None = None
    error: str | None = None
    input_tokens: int = 0
    output_tokens: int = 0
    model_calls: int = 0
    steps: int = 0
    #: timeouts and faults per component (``model``, ``tool:NAME``): {"timeout": n, "error": n}
    faults: dict[str, dict[str, int]] = field(default_factory=dict)
    #: while waiting: who must approve and what the call would do
    approval: dict[str, Any] | None = None
    executor_id: str | None = None
    workspace_commit: str | None = None
    #: its events and recorded steps were dropped by retention
    pruned: bool = False
    created_at: float = 0.0
    started_at: float | None = None
    finished_at: float | None = None

    @property
    def done(self) -> bool:
        return self.status in TERMINAL

    @property
    def total_tokens(self) -> int:
        return self.input_tokens + self.output_tokens

    def to_dict(self) -> dict[str, Any]:
        # Its fields read in C (a comprehension of getattr was ~30 Python calls a run created).
        data = dict(zip(_RECORD_FIELDS, _record_values(self), strict=True))
        data["total_tokens"] = self.total_tokens
        return data


_RECORD_FIELDS = tuple(item.name for item in fields(RunRecord))
_record_values = operator.attrgetter(*_RECORD_FIELDS)
_JSON_COLUMNS = ("faults", "approval", "child_params")


def _json(value: Any) -> str | None:
    return None if value is None else COMPACT.encode(value)


def _encoded(values: dict[str, Any]) -> dict[str, Any]:
    """``values`` with the JSON columns as text."""
    for key in _JSON_COLUMNS:
        if key in values and not isinstance(values[key], str | None):
            values[key] = _json(values[key])
    return values


def _update(run_id: str, unless_terminal: bool, values: dict[str, Any]) -> sa.Update:
    query = sa.update(runs).where(runs.c.run_id == run_id).values(**_encoded(values))
    if unless_terminal:
        query = query.where(runs.c.status.not_in(TERMINAL))
    return query


def _update_template(keys: tuple[str, ...], unless_terminal: bool) -> sa.Update:
    """``_update`` with its values as parameters (``set_COLUMN``, ``match_run_id``): compiled once."""
    query = (
        sa.update(runs)
        .where(runs.c.run_id == sa.bindparam("match_run_id", required=False))
        .values({key: sa.bindparam(f"set_{key}", required=False) for key in keys})
    )
    if unless_terminal:
        query = query.where(runs.c.status.not_in(TERMINAL))
    return query


@dataclass(frozen=True, kw_only=True)
class _Positional:
    """A statement compiled once for positional parameters: its SQL, the name of each parameter in
    order, and the values it carries itself (an ``IN`` list's)."""

    sql: str
    names: tuple[str, ...]
    fixed: dict[str, Any]

    def rows(self, rows: Sequence[dict[str, Any]]) -> list[tuple[Any, ...]]:
        # A row's values by name, else the statement's own: picked in C (a generator a row was ~7
        # Python calls an event, a batch of events a flush).
        fixed, names = self.fixed, self.names
        if len(names) < 2:  # itemgetter of one name gives the value, not a tuple of it
            return [tuple({**fixed, **row}[name] for name in names) for row in rows]
        pick = operator.itemgetter(*names)
        return [pick({**fixed, **row}) if fixed else pick(row) for row in rows]


#: a run by its id, and a page of its events, as ``RunStore.recorded`` reads them (``storage.reader``)
_run_by_id = sa.select(runs).where(runs.c.run_id == sa.bindparam("run_id"))
_events_page = (
    sa.select(events)
    .where(events.c.run_id == sa.bindparam("run_id"), events.c.seq > sa.bindparam("after"))
    .order_by(events.c.seq)
    .limit(sa.bindparam("limit"))
)
_RUN_COLUMNS = tuple(column.name for column in runs.columns)
_EVENT_COLUMNS = tuple(column.name for column in events.columns)


def _created(record: RunRecord) -> dict[str, Any]:
    """The columns of a new run's row."""
    values = record.to_dict()
    values.pop("total_tokens")
    for key in _JSON_COLUMNS:
        values[key] = _json(values[key])
    return values


def _row_to_record(row: Any) -> RunRecord:
    data = dict(row)
    data["pruned"] = bool(data["pruned"])  # 0 or 1 from a raw SQLite read
    data["faults"] = json.loads(data["faults"]) if data.get("faults") else {}
    data["approval"] = json.loads(data["approval"]) if data.get("approval") else None
    data["child_params"] = json.loads(data["child_params"]) if data.get("child_params") else None
    return RunRecord(**data)


def _create_index(engine: sa.Engine, index: sa.Index) -> None:
    """``index`` where a table made by an earlier version lacks it; another process making it at the same
    moment is not an error."""
    try:
        index.create(engine, checkfirst=True)
    except sa.exc.DBAPIError:
        table = index.table
        assert table is not None
        if index.name not in {found["name"] for found in sa.inspect(engine).get_indexes(table.name)}:
            raise


class RunStore:
    """Synchronous store; the runtime calls it through ``asyncio.to_thread``."""

    def __init__(self, engine: sa.Engine, *, owns_engine: bool = True) -> None:
        """``owns_engine``: ``close`` disposes ``engine`` (False for a shared one, ``storage.Engines``)."""
        self._owns_engine = owns_engine
        self.engine = engine
        create_tables(engine, _meta)
        # (columns added since the table was first made)
        add_columns(engine, runs, ["release", "track", "parent_run_id", "fork_step", "child_params"])
        _create_index(engine, _by_parent)
        self._insert_events = insert_ignore(engine, events, ["run_id", "seq"])
        #: ``update_statement`` and ``append_events_statement`` compiled, by the statement's shape
        #: (compiling one took ~2 ms of CPU, more than the rest of an agent step)
        self._compiled: dict[tuple[Any, ...], _Positional] = {}
        #: point reads by the database's cheapest path (``recorded``)
        self._reads = reader(engine)

    @classmethod
    def open(cls, url: str) -> RunStore:
        return cls(make_engine(url))

    def close(self) -> None:
        self._reads.close()
        if self._owns_engine:
            self.engine.dispose()

    # runs -----------------------------------------------------------------------------------
    def create(self, record: RunRecord) -> None:
        with self.engine.begin() as conn:
            conn.execute(sa.insert(runs).values(**_created(record)))

    def create_statement(self, record: RunRecord) -> tuple[str, list[tuple[Any, ...]]]:
        """``create`` as SQL and positional parameter rows (see ``update_statement``)."""
        values = _created(record)
        keys = list(values)
        statement = self._positional(("create", *keys), lambda: sa.insert(runs), keys)
        return statement.sql, statement.rows([values])

    def create_missing(self, records: Sequence[RunRecord]) -> list[str]:
        """Create each of ``records`` whose run does not exist yet (a child run its parent starts again
        after a crash exists already); returns the ids it created."""
        ids = [record.run_id for record in records]
        with self.engine.begin() as conn:
            have = set(conn.execute(sa.select(runs.c.run_id).where(runs.c.run_id.in_(ids))).scalars())
            rows: list[dict[str, Any]] = []
            for record in records:
                if record.run_id not in have:
                    rows.append(_created(record))
            if rows:
                conn.execute(sa.insert(runs), rows)
        return [str(row["run_id"]) for row in rows]

    def update(self, run_id: str, *, unless_terminal: bool = False, **values: Any) -> bool:
        """Set columns of one run; with ``unless_terminal`` only while it has not ended."""
        with self.engine.begin() as conn:
            return conn.execute(_update(run_id, unless_terminal, values)).rowcount > 0

    def update_statement(
        self, run_id: str, *, unless_terminal: bool = False, **values: Any
    ) -> tuple[str, list[tuple[Any, ...]]]:
        """``update`` as SQL and positional parameter rows for this store's database driver, for a
        writer that executes it in a transaction of its own (the step recorder's group commit)."""
        values = _encoded(values)
        keys = tuple(values)
        statement = self._positional(
            ("update", keys, unless_terminal), lambda: _update_template(keys, unless_terminal), []
        )
        params = {"match_run_id": run_id, **{f"set_{key}": value for key, value in values.items()}}
        return statement.sql, statement.rows([params])

    def append_events_statement(self, rows: Sequence[dict[str, Any]]) -> tuple[str, list[tuple[Any, ...]]]:
        """``append_events`` as SQL and positional parameter rows (see ``update_statement``)."""
        keys = list(rows[0]) if rows else []
        statement = self._positional(("events", *keys), lambda: self._insert_events, keys)
        return statement.sql, statement.rows(rows)

    def _positional(
        self, shape: tuple[Any, ...], query: Callable[[], sa.Executable], keys: list[str]
    ) -> _Positional:
        statement = self._compiled.get(shape)
        if statement is None:
            compiled = query().compile(  # type: ignore[attr-defined]
                dialect=self.engine.dialect, column_keys=keys, compile_kwargs={"render_postcompile": True}
            )
            statement = self._compiled[shape] = _Positional(
                sql=str(compiled), names=tuple(compiled.positiontup or ()), fixed=dict(compiled.params)
            )
        return statement

    def get(self, run_id: str) -> RunRecord:
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(runs).where(runs.c.run_id == run_id)).mappings().first()
        if row is None:
            raise RunNotFoundError(f"no run {run_id!r}; `shopfloor runs ls` lists the runs")
        return _row_to_record(row)

    def get_many(self, run_ids: Sequence[str]) -> dict[str, RunRecord]:
        """The runs of ``run_ids`` that exist, by id (an id with no run is left out): one query per
        ``_MANY`` ids, where reading each by ``get`` costs a query and a connection checkout apiece."""
        ids = list(dict.fromkeys(run_ids))
        found: dict[str, RunRecord] = {}
        with self.engine.connect() as conn:
            for start in range(0, len(ids), _MANY):
                query = sa.select(runs).where(runs.c.run_id.in_(ids[start : start + _MANY]))
                for row in conn.execute(query).mappings():
                    record = _row_to_record(row)
                    found[record.run_id] = record
        return found

    def recorded(self, run_id: str, *, page: int = 500) -> tuple[RunRecord, list[dict[str, Any]]]:
        """The run and all its events in order (``page`` a query), read by the store's cheapest path
        (``storage.reader``: on SQLite this thread's raw connection, ~10x less CPU than through the
        engine's pool and result objects): what an evaluation reads of each item's ended run."""
        found = self._reads.rows(_run_by_id, {"run_id": run_id})
        if not found:
            raise RunNotFoundError(f"no run {run_id!r}; `shopfloor runs ls` lists the runs")
        record = _row_to_record(zip(_RUN_COLUMNS, found[0], strict=True))
        read: list[dict[str, Any]] = []
        while True:
            after = read[-1]["seq"] if read else -1
            batch = self._reads.rows(_events_page, {"run_id": run_id, "after": after, "limit": page})
            for row in batch:
                event = dict(zip(_EVENT_COLUMNS, row, strict=True))
                event["data"] = json.loads(event["data"])
                read.append(event)
            if len(batch) < page:  # a short page is the last: no empty read to learn that
                return record, read

    def find(self, prefix: str) -> RunRecord:
        """The run whose id is ``prefix`` or starts with it (ids are long; people type a few characters).
        A whole id is read by its primary key first: a prefix is a scan of the runs on SQLite and on a
        PostgreSQL whose collation is not C, and waiting for a run reads it again every poll."""
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(runs).where(runs.c.run_id == prefix)).mappings().first()
            if row is not None:
                return _row_to_record(row)
            rows = (
                conn.execute(sa.select(runs).where(runs.c.run_id.startswith(prefix)).limit(2))
                .mappings()
                .all()
            )
        exact = [row for row in rows if row["run_id"] == prefix]
        if exact or len(rows) == 1:
            return _row_to_record((exact or rows)[0])
        if rows:
            raise RunNotFoundError(f"{prefix!r} matches more than one run; give more of the id")
        raise RunNotFoundError(f"no run {prefix!r}; `shopfloor runs ls` lists the runs")

    def list_runs(
        self,
        *,
        limit: int = 50,
        status: str | None = None,
        agent: str | None = None,
        before: tuple[float, str] | None = None,
    ) -> list[RunRecord]:
        """Newest first; ``before`` (created_at, run_id) of the last run of a page gives the next page."""
        query = sa.select(runs).order_by(runs.c.created_at.desc(), runs.c.run_id.desc()).limit(limit)
        if before is not None:
            at, run_id = before
            query = query.where(
                sa.or_(runs.c.created_at < at, sa.and_(runs.c.created_at == at, runs.c.run_id < run_id))
            )
        if status:
            query = query.where(runs.c.status == status)
        if agent:
            query = query.where(runs.c.agent == agent)
        with self.engine.connect() as conn:
            return [_row_to_record(row) for row in conn.execute(query).mappings()]

    def children(self, parent_run_ids: Sequence[str]) -> list[RunRecord]:
        """The child runs of ``parent_run_ids`` (not their forks), oldest first."""
        ids = list(parent_run_ids)
        if not ids:
            return []
        query = (
            sa.select(runs)
            .where(runs.c.parent_run_id.in_(ids), runs.c.child_params.is_not(None))
            .order_by(runs.c.created_at, runs.c.run_id)
        )
        with self.engine.connect() as conn:
            return [_row_to_record(row) for row in conn.execute(query).mappings()]

    def by_release(self, agent: str, release: str, *, since: float, limit: int = 10_000) -> list[RunRecord]:
        """The runs of ``agent`` started on ``release`` (``NAME@VERSION``) since ``since`` (newest first):
        what the metrics of one release are computed from."""
        query = (
            sa.select(runs)
            .where(runs.c.agent == agent, runs.c.release == release, runs.c.created_at >= since)
            .order_by(runs.c.created_at.desc())
            .limit(limit)
        )
        with self.engine.connect() as conn:
            return [_row_to_record(row) for row in conn.execute(query).mappings()]

    def unfinished(self, *, limit: int = 1000) -> list[RunRecord]:
        """Runs that started and have not ended (running or waiting for approval)."""
        query = sa.select(runs).where(runs.c.status.in_(("running", "waiting_approval"))).limit(limit)
        with self.engine.connect() as conn:
            return [_row_to_record(row) for row in conn.execute(query).mappings()]

    # events ---------------------------------------------------------------------------------
    def append_events(self, rows: Sequence[dict[str, Any]]) -> None:
        if rows:
            with self.engine.begin() as conn:
                conn.execute(self._insert_events, list(rows))

    def read_events(self, run_id: str, *, after: int = -1, limit: int = 500) -> list[dict[str, Any]]:
        query = (
            sa.select(events)
            .where(events.c.run_id == run_id, events.c.seq > after)
            .order_by(events.c.seq)
            .limit(limit)
        )
        with self.engine.connect() as conn:
            rows = conn.execute(query).mappings().all()
        return [{**row, "data": json.loads(row["data"])} for row in rows]

    def ended_before(self, older_than: float, *, limit: int = 1000) -> list[str]:
        """Ids of runs that ended before ``older_than`` (epoch seconds), oldest first."""
        query = (
            sa.select(runs.c.run_id)
            .where(runs.c.finished_at < older_than, runs.c.pruned.is_(False))
            .order_by(runs.c.finished_at)
            .limit(limit)
        )
        with self.engine.connect() as conn:
            return list(conn.execute(query).scalars())

    def drop_events(self, run_ids: Sequence[str]) -> None:
        """Drop the runs' events and mark them pruned."""
        ids = list(run_ids)
        with self.engine.begin() as conn:
            conn.execute(sa.delete(events).where(events.c.run_id.in_(ids)))
            conn.execute(sa.update(runs).where(runs.c.run_id.in_(ids)).values(pruned=True))

    # executors ------------------------------------------------------------------------------
    def heartbeat(self, executor_id: str, *, role: str, pid: int, host: str) -> None:
        now = time.time()
        with self.engine.begin() as conn:
            updated = conn.execute(
                sa.update(executors)
                .where(executors.c.executor_id == executor_id)
                .values(last_seen=now, stopped=False)
            ).rowcount
            if not updated:
                conn.execute(
                    sa.insert(executors).values(
                        executor_id=executor_id,
                        role=role,
                        pid=pid,
                        host=host,
                        started_at=now,
                        last_seen=now,
                        stopped=False,
                    )
                )

    def stop_executor(self, executor_id: str) -> None:
        with self.engine.begin() as conn:
            conn.execute(
                sa.update(executors).where(executors.c.executor_id == executor_id).values(stopped=True)
            )

    def live_executors(self, *, timeout: float) -> set[str]:
        cutoff = time.time() - timeout
        query = sa.select(executors.c.executor_id).where(
            executors.c.last_seen >= cutoff, executors.c.stopped.is_(False)
        )
        with self.engine.connect() as conn:
            return set(conn.execute(query).scalars())
