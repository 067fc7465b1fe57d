"""What the control plane keeps besides the runtime's tables: the agents registered with the server
and the idempotency keys of ``POST /v1/runs``.

Both live in the runtime's database (``settings.db_url``), so every worker process and every machine
sharing PostgreSQL sees the same agents and the same answers to a retried request.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from shopfloor.errors import AgentNotFoundError
from shopfloor.storage import create_tables, insert_ignore, make_engine

if TYPE_CHECKING:
    from shopfloor.runtime import RoutedRun, Runtime

__all__ = ["AgentRecord", "ControlStore", "agent_spec_path"]

_meta = sa.MetaData()
agents = sa.Table(
    "shopfloor_agents",
    _meta,
    sa.Column("name", sa.String(128), primary_key=True),
    sa.Column("spec_path", sa.Text, nullable=False),
    sa.Column("version", sa.String(64), nullable=False),
    sa.Column("digest", sa.String(80), nullable=False),
    sa.Column("registered_by", sa.String(256), nullable=False),
    sa.Column("registered_at", sa.Float, nullable=False),
)
idempotency = sa.Table(
    "shopfloor_idempotency",
    _meta,
    sa.Column("principal", sa.String(256), primary_key=True),
    sa.Column("key", sa.String(256), primary_key=True),
    #: a hash of the request, so the same key with another body is a conflict, not a replay
    sa.Column("request", sa.String(64), nullable=False),
    #: empty while the first request is still creating the run
    sa.Column("run_id", sa.String(64), nullable=False),
    sa.Column("created_at", sa.Float, nullable=False),
)


@dataclass(frozen=True, kw_only=True)
class AgentRecord:
    name: str
    spec_path: str
    version: str
    digest: str
    registered_by: str
    registered_at: float

    def to_dict(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self.__dataclass_fields__}


class ControlStore:
    """Synchronous; the API calls it from a thread."""

    def __init__(self, engine: sa.Engine) -> None:
        self.engine = engine
        create_tables(engine, _meta)
        # RETURNING says whether this insert made the row (psycopg reports no rowcount for it).
        self._claim = insert_ignore(engine, idempotency, ["principal", "key"]).returning(idempotency.c.key)

    @classmethod
    def open(cls, url: str) -> ControlStore:
        return cls(make_engine(url))

    def close(self) -> None:
        self.engine.dispose()

    # agents ----------------------------------------------------------------------------------
    def register(self, record: AgentRecord) -> None:
        """Register or re-register (a new version of) an agent under its name."""
        values = record.to_dict()
        with self.engine.begin() as conn:
            updated = conn.execute(
                sa.update(agents).where(agents.c.name == record.name).values(**values)
            ).rowcount
            if not updated:
                conn.execute(sa.insert(agents).values(**values))

    def agent(self, name: str) -> AgentRecord:
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(agents).where(agents.c.name == name)).mappings().first()
        if row is None:
            raise AgentNotFoundError(f"no agent {name!r} is registered; POST /v1/agents registers one")
        return AgentRecord(**row)

    def list_agents(self) -> list[AgentRecord]:
        with self.engine.connect() as conn:
            rows = conn.execute(sa.select(agents).order_by(agents.c.name)).mappings().all()
        return [AgentRecord(**row) for row in rows]

    # idempotency -----------------------------------------------------------------------------
    def claim(self, principal: str, key: str, request: str) -> tuple[bool, str, str]:
        """Claim ``key`` for a new request: (claimed, the stored request hash, the stored run id)."""
        with self.engine.begin() as conn:
            values = {
                "principal": principal,
                "key": key,
                "request": request,
                "run_id": "",
                "created_at": time.time(),
            }
            claimed = conn.execute(self._claim, values).first() is not None
            row = conn.execute(
                sa.select(idempotency.c.request, idempotency.c.run_id).where(
                    idempotency.c.principal == principal, idempotency.c.key == key
                )
            ).one()
        return claimed, row.request, row.run_id

    def settle(self, principal: str, key: str, run_id: str) -> None:
        with self.engine.begin() as conn:
            conn.execute(
                sa.update(idempotency)
                .where(idempotency.c.principal == principal, idempotency.c.key == key)
                .values(run_id=run_id)
            )

    def release(self, principal: str, key: str) -> None:
        """Forget a claim whose request failed before creating a run (a retry may try again)."""
        with self.engine.begin() as conn:
            conn.execute(
                sa.delete(idempotency).where(
                    idempotency.c.principal == principal,
                    idempotency.c.key == key,
                    idempotency.c.run_id == "",
                )
            )


async def agent_spec_path(
    runtime: Runtime, store: ControlStore, name: str, caller: str
) -> tuple[str, RoutedRun | None]:
    """Where a run of agent ``name`` started by ``caller`` goes: the release its deployment picks for
    the caller, else the registered spec (AgentNotFoundError when neither exists)."""
    routed = await runtime.route(name, caller)
    if routed is not None:
        return routed.spec_path, routed
    return (await asyncio.to_thread(store.agent, name)).spec_path, None
