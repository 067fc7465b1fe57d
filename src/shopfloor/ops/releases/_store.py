"""Where releases, deployments, feedback and the judged scores of runs are kept: tables in the runtime's
database (SQLite or PostgreSQL), and the releases' files content-addressed in the workspace object store (``file://``,
``s3://`` ...) under ``release-files/HEX``, a prefix workspace garbage collection never touches.

A release row is inserted once and never updated (its primary key is name and version); a deployment row
is updated by compare-and-set on its revision, so two deploys racing on one agent cannot both win.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import sqlalchemy as sa

from shopfloor.errors import DeploymentError, ReleaseError
from shopfloor.ops.releases._release import Release
from shopfloor.runtime import RunJudgement
from shopfloor.storage import create_tables, insert_ignore

__all__ = ["Deployment", "DeploymentEvent", "Feedback", "ReleaseStore", "object_key"]

_meta = sa.MetaData()
releases = sa.Table(
    "shopfloor_releases",
    _meta,
    sa.Column("name", sa.String(128), primary_key=True),
    sa.Column("version", sa.String(128), primary_key=True),
    sa.Column("content_digest", sa.String(80), nullable=False),
    sa.Column("agent_digest", sa.String(80), nullable=False, index=True),
    sa.Column("document", sa.Text, nullable=False),
    sa.Column("created_at", sa.Float, nullable=False),
)
deployments = sa.Table(
    "shopfloor_deployments",
    _meta,
    sa.Column("agent", sa.String(128), primary_key=True),
    sa.Column("stable", sa.String(128), nullable=False),
    sa.Column("candidate", sa.String(128)),
    sa.Column("canary", sa.Integer, nullable=False),
    #: when the candidate started taking runs (the window of its evaluation starts here)
    sa.Column("candidate_since", sa.Float),
    sa.Column("revision", sa.Integer, nullable=False),
    sa.Column("updated_by", sa.String(256), nullable=False),
    sa.Column("updated_at", sa.Float, nullable=False),
)
history = sa.Table(
    "shopfloor_deployment_history",
    _meta,
    sa.Column("event_id", sa.String(32), primary_key=True),
    sa.Column("agent", sa.String(128), nullable=False, index=True),
    sa.Column("action", sa.String(32), nullable=False),
    sa.Column("stable", sa.String(128), nullable=False),
    sa.Column("candidate", sa.String(128)),
    sa.Column("canary", sa.Integer, nullable=False),
    sa.Column("reason", sa.Text, nullable=False),
    sa.Column("actor", sa.String(256), nullable=False),
    sa.Column("at", sa.Float, nullable=False, index=True),
)
feedback_table = sa.Table(
    "shopfloor_feedback",
    _meta,
    sa.Column("run_id", sa.String(64), primary_key=True),
    #: who gave it: one rating per person and run (a second replaces the first)
    sa.Column("author", sa.String(256), primary_key=True),
    sa.Column("agent", sa.String(128), nullable=False, index=True),
    #: ``NAME@VERSION`` of the release the run ran, empty for a run of an unreleased agent
    sa.Column("release", sa.String(256), nullable=False, index=True),
    sa.Column("rating", sa.Integer, nullable=False),
    sa.Column("comment", sa.Text, nullable=False),
    sa.Column("correction", sa.Text),
    sa.Column("at", sa.Float, nullable=False, index=True),
)

#: the judged quality of sampled runs (a canary metric): one grade per run, kept so that no run is judged
#: twice
judgements = sa.Table(
    "shopfloor_run_judgements",
    _meta,
    sa.Column("run_id", sa.String(64), primary_key=True),
    sa.Column("release", sa.String(256), nullable=False, index=True),
    sa.Column("score", sa.Float, nullable=False),
    sa.Column("judge", sa.String(256), nullable=False),
    sa.Column("reply", sa.Text, nullable=False),
    sa.Column("at", sa.Float, nullable=False),
)


def object_key(sha256: str) -> str:
    """The object store key of a release file's bytes (``sha256:HEX`` or ``HEX``)."""
    return "release-files/" + sha256.removeprefix("sha256:")


@dataclass(frozen=True, kw_only=True)
class Deployment:
    agent: str
    #: the version serving every run the canary does not take
    stable: str
    candidate: str | None = None
    #: percent of callers whose new runs go to the candidate
    canary: int = 0
    candidate_since: float | None = None
    revision: int = 0
    updated_by: str = ""
    updated_at: float = 0.0

    def to_json(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self.__dataclass_fields__}


@dataclass(frozen=True, kw_only=True)
class DeploymentEvent:
    agent: str
    action: str
    stable: str
    candidate: str | None
    canary: int
    reason: str
    actor: str
    at: float

    def to_json(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self.__dataclass_fields__}


@dataclass(frozen=True, kw_only=True)
class Feedback:
    run_id: str
    author: str
    agent: str
    release: str
    rating: int
    comment: str = ""
    correction: str | None = None
    at: float = 0.0

    def to_json(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self.__dataclass_fields__}


class ReleaseStore:
    """Synchronous; async callers use ``asyncio.to_thread``. The engine is the process's shared one."""

    def __init__(self, engine: sa.Engine) -> None:
        self.engine = engine
        create_tables(engine, _meta)
        self._insert_release = insert_ignore(engine, releases, ["name", "version"])
        self._insert_judgement = insert_ignore(engine, judgements, ["run_id"])

    # releases --------------------------------------------------------------------------------
    def insert(self, release: Release) -> Release:
        """Store ``release`` unless its version exists; returns the stored one (maybe an earlier)."""
        values = {
            "name": release.name,
            "version": release.version,
            "content_digest": release.content_digest,
            "agent_digest": release.agent_digest,
            "document": json.dumps(release.to_json(), sort_keys=True),
            "created_at": release.created_at,
        }
        with self.engine.begin() as conn:
            conn.execute(self._insert_release, values)
        stored = self.find(release.name, release.version)
        assert stored is not None
        return stored

    def find(self, name: str, version: str | None = None) -> Release | None:
        """The release ``name@version``, or the newest of ``name``."""
        query = sa.select(releases.c.document).where(releases.c.name == name)
        if version is not None:
            query = query.where(releases.c.version == version)
        with self.engine.connect() as conn:
            row = conn.execute(query.order_by(releases.c.created_at.desc()).limit(1)).first()
        return _release(row.document) if row is not None else None

    def by_agent_digest(self, digest: str) -> Release | None:
        with self.engine.connect() as conn:
            row = conn.execute(
                sa.select(releases.c.document).where(releases.c.agent_digest == digest).limit(1)
            ).first()
        return _release(row.document) if row is not None else None

    def list_releases(self, name: str | None = None) -> list[Release]:
        query = sa.select(releases.c.document).order_by(releases.c.name, releases.c.created_at)
        if name is not None:
            query = query.where(releases.c.name == name)
        with self.engine.connect() as conn:
            return [_release(row.document) for row in conn.execute(query)]

    # deployments -----------------------------------------------------------------------------
    def deployment(self, agent: str) -> Deployment | None:
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(deployments).where(deployments.c.agent == agent)).mappings().first()
        return Deployment(**row) if row is not None else None

    def deployments(self) -> list[Deployment]:
        with self.engine.connect() as conn:
            rows = conn.execute(sa.select(deployments).order_by(deployments.c.agent)).mappings().all()
        return [Deployment(**row) for row in rows]

    def history(self, agent: str, *, limit: int = 100) -> list[DeploymentEvent]:
        query = (
            sa.select(history)
            .where(history.c.agent == agent)
            .order_by(history.c.at.desc(), history.c.event_id.desc())
            .limit(limit)
        )
        with self.engine.connect() as conn:
            rows = conn.execute(query).mappings().all()
        return [DeploymentEvent(**{k: v for k, v in row.items() if k != "event_id"}) for row in rows]

    def save(self, before: Deployment | None, after: Deployment, *, action: str, reason: str) -> Deployment:
        """Write ``after`` if the agent's deployment is still ``before`` (compare-and-set on the revision)
        and its history line, in one transaction; ``DeploymentError`` when another change came first."""
        saved = self.save_all([(before, after)], action=action, reason=reason, actor=after.updated_by)[0]
        assert saved is not None
        return saved

    def save_all(
        self,
        changes: list[tuple[Deployment | None, Deployment | None]],
        *,
        action: str,
        reason: str,
        actor: str,
        also: Callable[[sa.Connection], None] | None = None,
    ) -> list[Deployment | None]:
        """Several agents' deployments changed in one transaction (each ``before`` -> ``after``, compare-
        and-set on the revision; ``after`` None removes the deployment), with ``also`` written in the same
        transaction: a reconciler that dies half-way leaves all of them or none (``DeploymentError`` when
        another change came first, and nothing is written)."""
        now = time.time()
        saved: list[Deployment | None] = []
        with self.engine.begin() as conn:
            for before, after in changes:
                either = after if after is not None else before
                assert either is not None, "a change names a deployment before or after"
                agent = either.agent
                if after is None:
                    assert before is not None
                    done = conn.execute(
                        sa.delete(deployments).where(
                            deployments.c.agent == agent, deployments.c.revision == before.revision
                        )
                    ).rowcount
                    shown = before
                else:
                    after = replace(
                        after,
                        revision=(before.revision if before else 0) + 1,
                        updated_by=actor,
                        updated_at=now,
                    )
                    values = after.to_json()
                    if before is None:
                        claim = insert_ignore(self.engine, deployments, ["agent"]).returning(
                            deployments.c.agent
                        )
                        done = int(conn.execute(claim.values(**values)).first() is not None)
                    else:
                        done = conn.execute(
                            sa.update(deployments)
                            .where(deployments.c.agent == agent, deployments.c.revision == before.revision)
                            .values(**values)
                        ).rowcount
                    shown = after
                if not done:
                    raise DeploymentError(
                        f"the deployment of {agent} changed while this {action} was being made; "
                        "look at `shopfloor deployments show` and try again"
                    )
                conn.execute(
                    sa.insert(history).values(
                        event_id=uuid.uuid4().hex,
                        agent=agent,
                        action=action if after is not None else "undeploy",
                        stable=shown.stable,
                        candidate=shown.candidate if after is not None else None,
                        canary=shown.canary if after is not None else 0,
                        reason=reason,
                        actor=actor,
                        at=now,
                    )
                )
                saved.append(after)
            if also is not None:
                also(conn)
        return saved

    # feedback --------------------------------------------------------------------------------
    def add_feedback(self, item: Feedback) -> None:
        key = sa.and_(feedback_table.c.run_id == item.run_id, feedback_table.c.author == item.author)
        with self.engine.begin() as conn:
            conn.execute(sa.delete(feedback_table).where(key))
            conn.execute(sa.insert(feedback_table).values(**item.to_json()))

    def feedback(
        self, *, agent: str | None = None, release: str | None = None, since: float = 0.0
    ) -> list[Feedback]:
        query = sa.select(feedback_table).where(feedback_table.c.at >= since).order_by(feedback_table.c.at)
        if agent is not None:
            query = query.where(feedback_table.c.agent == agent)
        if release is not None:
            query = query.where(feedback_table.c.release == release)
        with self.engine.connect() as conn:
            return [Feedback(**row) for row in conn.execute(query).mappings()]

    # judged runs ------------------------------------------------------------------------------
    def add_judgements(self, release: str, made: list[RunJudgement]) -> None:
        """Keep the grades of runs of ``release`` (a run graded twice keeps its first grade)."""
        if not made:
            return
        now = time.time()
        rows = [
            {"run_id": j.run_id, "release": release, "score": j.score, "judge": j.judge, "reply": j.reply}
            for j in made
        ]
        with self.engine.begin() as conn:
            conn.execute(self._insert_judgement, [row | {"at": now} for row in rows])

    def judgements(self, release: str) -> dict[str, float]:
        """The judged score of each graded run of ``release``, by run id."""
        query = sa.select(judgements.c.run_id, judgements.c.score).where(judgements.c.release == release)
        with self.engine.connect() as conn:
            return {row.run_id: row.score for row in conn.execute(query)}


def _release(document: str) -> Release:
    try:
        return Release.from_json(json.loads(document))
    except (ValueError, TypeError) as exc:
        raise ReleaseError(f"a stored release document is unreadable: {exc}") from exc
