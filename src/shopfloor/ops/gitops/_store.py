"""What the controller remembers per repository: the revision applied, a rollback's pin, the objects it
manages (what prune may remove), and the history of every sync. Tables in the runtime's database; the
state of a successful sync is written in the transaction that changes the deployments."""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa

from shopfloor.storage import create_tables

__all__ = ["GitOpsState", "GitOpsStore", "SyncRecord"]

_meta = sa.MetaData()
state_table = sa.Table(
    "shopfloor_gitops_state",
    _meta,
    sa.Column("repo", sa.String(64), primary_key=True),
    sa.Column("url", sa.Text, nullable=False),
    sa.Column("applied", sa.String(64)),
    #: a rollback's revision, held while the repository's head is still ``pinned_head``
    sa.Column("pinned", sa.String(64)),
    sa.Column("pinned_head", sa.String(64)),
    #: JSON: each agent whose deployment this repository declared, and the deployment it declared
    #: (a live deployment that differs while git did not change is drift; prune removes the rest)
    sa.Column("managed", sa.Text, nullable=False),
    sa.Column("updated_at", sa.Float, nullable=False),
)
history_table = sa.Table(
    "shopfloor_gitops_history",
    _meta,
    sa.Column("sync_id", sa.String(32), primary_key=True),
    sa.Column("repo", sa.String(64), nullable=False, index=True),
    sa.Column("revision", sa.String(64)),
    sa.Column("head", sa.String(64)),
    #: synced | unchanged | failed | pinned
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("actor", sa.String(256), nullable=False),
    sa.Column("message", sa.Text, nullable=False),
    sa.Column("changes", sa.Text, nullable=False),
    sa.Column("at", sa.Float, nullable=False, index=True),
)


@dataclass(frozen=True, kw_only=True)
class GitOpsState:
    repo: str
    url: str
    applied: str | None = None
    pinned: str | None = None
    pinned_head: str | None = None
    managed: dict[str, dict[str, Any]] = field(default_factory=dict)


@dataclass(frozen=True, kw_only=True)
class SyncRecord:
    repo: str
    revision: str | None
    head: str | None
    status: str
    actor: str
    message: str
    changes: list[dict[str, Any]]
    at: float

    def to_json(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self.__dataclass_fields__}


class GitOpsStore:
    def __init__(self, engine: sa.Engine) -> None:
        self.engine = engine
        create_tables(engine, _meta)

    def state(self, repo: str, url: str) -> GitOpsState:
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(state_table).where(state_table.c.repo == repo)).mappings().first()
        if row is None:
            return GitOpsState(repo=repo, url=url)
        return GitOpsState(
            repo=repo,
            url=row["url"],
            applied=row["applied"],
            pinned=row["pinned"],
            pinned_head=row["pinned_head"],
            managed=dict(json.loads(row["managed"])),
        )

    def write_state(self, conn: sa.Connection, state: GitOpsState) -> None:
        values = {
            "url": state.url,
            "applied": state.applied,
            "pinned": state.pinned,
            "pinned_head": state.pinned_head,
            "managed": json.dumps(state.managed, sort_keys=True),
            "updated_at": time.time(),
        }
        done = conn.execute(
            sa.update(state_table).where(state_table.c.repo == state.repo).values(**values)
        ).rowcount
        if not done:
            conn.execute(sa.insert(state_table).values(repo=state.repo, **values))

    def save_state(self, state: GitOpsState) -> None:
        with self.engine.begin() as conn:
            self.write_state(conn, state)

    def write_record(self, conn: sa.Connection, record: SyncRecord) -> None:
        values = record.to_json()
        values["changes"] = json.dumps(record.changes, sort_keys=True)
        conn.execute(sa.insert(history_table).values(sync_id=uuid.uuid4().hex, **values))

    def record(self, record: SyncRecord) -> None:
        with self.engine.begin() as conn:
            self.write_record(conn, record)

    def history(self, repo: str, *, limit: int = 100) -> list[SyncRecord]:
        query = (
            sa.select(history_table)
            .where(history_table.c.repo == repo)
            .order_by(history_table.c.at.desc())
            .limit(limit)
        )
        with self.engine.connect() as conn:
            rows = conn.execute(query).mappings().all()
        return [
            SyncRecord(**{k: v for k, v in row.items() if k not in ("sync_id", "changes")},
                       changes=json.loads(row["changes"]))
            for row in rows
        ]  # fmt: skip
