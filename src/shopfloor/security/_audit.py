"""The audit log: append-only, hash-chained entries with periodic Ed25519-signed checkpoints.

Each entry holds the hash of the one before it, so an edited, deleted, inserted or reordered entry breaks
the chain at that entry; every ``checkpoint_every`` entries a checkpoint signs the chain's head, so a
rewritten chain (every hash recomputed) or a truncated one fails on a checkpoint. An entry and its
checkpoint are written in one transaction: a process killed during an append leaves the chain as it was
before or after, never half-written. Appends from several processes serialise on the entry number (the
primary key): the loser of a race re-reads the head and tries again.

The entries after the last checkpoint (the tail) are chained but not signed: someone with write access
to the database could append to them or edit them and recompute their hashes. ``verify`` therefore
reports the tail apart (``unsigned_tail``: how many entries since which checkpoint) rather than calling it
verified, and keeps it bounded: an append also checkpoints when ``checkpoint_interval`` seconds have passed
since the last signed entry, so an honest tail holds fewer than ``checkpoint_every`` entries, all written
within ``checkpoint_interval`` of that entry. A tail that breaks one of those bounds could
not have been written by ``append``: ``verify`` fails on its first entry that does.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import os
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import sqlalchemy as sa
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from shopfloor.config import Settings
from shopfloor.errors import ConfigError, SecurityError
from shopfloor.storage import create_tables, make_engine

__all__ = [
    "GENESIS",
    "AuditEntry",
    "AuditLog",
    "AuditVerification",
    "Outcome",
    "build_audit_log",
    "load_signing_key",
]

#: the ``prev`` of the first entry
GENESIS = "0" * 64
_RETRIES = 50

Outcome = Literal["ok", "denied", "failed"]

_meta = sa.MetaData()
entries_table = sa.Table(
    "audit_entries",
    _meta,
    sa.Column("seq", sa.BigInteger, primary_key=True, autoincrement=False),
    sa.Column("at", sa.Float, nullable=False),
    sa.Column("actor", sa.String(512), nullable=False),
    sa.Column("kind", sa.String(64), nullable=False, index=True),
    sa.Column("outcome", sa.String(16), nullable=False),
    sa.Column("resource", sa.String(512), nullable=False),
    sa.Column("details", sa.Text, nullable=False),
    sa.Column("prev", sa.String(64), nullable=False),
    sa.Column("hash", sa.String(64), nullable=False),
)
checkpoints_table = sa.Table(
    "audit_checkpoints",
    _meta,
    sa.Column("seq", sa.BigInteger, primary_key=True, autoincrement=False),
    sa.Column("hash", sa.String(64), nullable=False),
    sa.Column("public_key", sa.String(64), nullable=False),
    sa.Column("signature", sa.String(128), nullable=False),
    sa.Column("at", sa.Float, nullable=False),
)
#: per SIEM exporter: the last entry it has accepted, and how many sends failed
exports_table = sa.Table(
    "audit_exports",
    _meta,
    sa.Column("exporter", sa.String(128), primary_key=True),
    sa.Column("last_seq", sa.BigInteger, nullable=False),
    sa.Column("failures", sa.BigInteger, nullable=False),
    sa.Column("last_error", sa.Text),
)


@dataclass(frozen=True, kw_only=True)
class AuditEntry:
    seq: int
    at: float
    #: the principal id that acted (``key:ID``, ``local-admin``, ``agent:NAME``)
    actor: str
    #: what happened: ``permission.denied``, ``approval.decided``, ``secret.read``, ``key.created`` ...
    kind: str
    outcome: Outcome
    resource: str
    details: Mapping[str, Any]
    prev: str
    hash: str

    def to_dict(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self.__dataclass_fields__} | {
            "details": dict(self.details)
        }


@dataclass(frozen=True, kw_only=True)
class AuditVerification:
    ok: bool
    entries: int
    checkpoints: int
    #: the first entry (or checkpoint's entry) that does not verify
    first_bad: int | None = None
    problem: str = ""
    #: the last entry a checkpoint signs (0: none yet); the entries after it are chained, not signed
    signed_through: int = 0
    #: how many entries follow it (an unsigned tail, within the bounds an honest log keeps)
    unsigned_tail: int = 0

    @property
    def summary(self) -> str:
        """One line for people: what verified, and the unsigned tail apart."""
        if not self.ok:
            return f"entry {self.first_bad}: {self.problem}"
        line = f"{self.entries} entries, {self.checkpoints} signed checkpoints verify"
        if self.unsigned_tail:
            since = f"checkpoint {self.signed_through}" if self.signed_through else "the start"
            line += (
                f"; unverified tail of {self.unsigned_tail} entries since {since} "
                "(chained but not yet signed)"
            )
        return line


def _canonical(details: Mapping[str, Any]) -> str:
    return json.dumps(details, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)


def entry_hash(entry: AuditEntry) -> str:
    """The hash an entry must carry: of its number, time, actor, kind, outcome, resource, canonical
    details and the previous entry's hash."""
    body = json.dumps(
        [
            entry.seq,
            repr(entry.at),
            entry.actor,
            entry.kind,
            entry.outcome,
            entry.resource,
            _canonical(entry.details),
            entry.prev,
        ],
        separators=(",", ":"),
    )
    return hashlib.sha256(body.encode()).hexdigest()


def load_signing_key(path: Path) -> Ed25519PrivateKey:
    """The Ed25519 key at ``path`` (PEM, PKCS#8); created (mode 0600) where there is none."""
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        pem = Ed25519PrivateKey.generate().private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as out:
            out.write(pem)
    try:
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"{path}: not an unencrypted PEM private key: {exc}") from exc
    if not isinstance(key, Ed25519PrivateKey):
        raise ConfigError(f"{path}: the audit signing key must be Ed25519")
    return key


def _raw_public(key: Ed25519PublicKey) -> str:
    return key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw).hex()


def _row_entry(row: Any) -> AuditEntry:
    return AuditEntry(
        seq=int(row.seq),
        at=float(row.at),
        actor=row.actor,
        kind=row.kind,
        outcome=row.outcome,
        resource=row.resource,
        details=json.loads(row.details),
        prev=row.prev,
        hash=row.hash,
    )


class AuditLog:
    """Appends, reads and verifies the audit log in one SQL database."""

    def __init__(
        self,
        engine: sa.Engine,
        *,
        signing_key: Ed25519PrivateKey,
        checkpoint_every: int = 100,
        checkpoint_interval: float = 60.0,
    ) -> None:
        self.engine = engine
        self.signing_key = signing_key
        self.public_key = _raw_public(signing_key.public_key())
        self.checkpoint_every = checkpoint_every
        self.checkpoint_interval = checkpoint_interval
        create_tables(engine, _meta)

    @classmethod
    def open(
        cls,
        url: str,
        *,
        signing_key: Ed25519PrivateKey,
        checkpoint_every: int = 100,
        checkpoint_interval: float = 60.0,
    ) -> AuditLog:
        return cls(
            make_engine(url),
            signing_key=signing_key,
            checkpoint_every=checkpoint_every,
            checkpoint_interval=checkpoint_interval,
        )

    def close(self) -> None:
        self.engine.dispose()

    def __enter__(self) -> AuditLog:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # writing -----------------------------------------------------------------------------------
    def append(
        self,
        kind: str,
        *,
        actor: str,
        outcome: Outcome = "ok",
        resource: str = "",
        details: Mapping[str, Any] | None = None,
    ) -> AuditEntry:
        """Append one entry (and the checkpoint it completes) atomically; returns it."""
        text = _canonical(details or {})
        for attempt in range(_RETRIES):
            try:
                with self._write_transaction() as conn:
                    head = conn.execute(
                        sa.select(entries_table.c.seq, entries_table.c.hash)
                        .order_by(entries_table.c.seq.desc())
                        .limit(1)
                    ).first()
                    seq, prev = (int(head.seq) + 1, head.hash) if head else (1, GENESIS)
                    entry = AuditEntry(
                        seq=seq,
                        at=time.time(),
                        actor=actor,
                        kind=kind,
                        outcome=outcome,
                        resource=resource,
                        details=json.loads(text),
                        prev=prev,
                        hash="",
                    )
                    entry = dataclasses.replace(entry, hash=entry_hash(entry))
                    conn.execute(entries_table.insert().values({**entry.to_dict(), "details": text}))
                    if seq % self.checkpoint_every == 0 or self._signed_long_ago(conn, entry.at):
                        conn.execute(checkpoints_table.insert().values(**self._checkpoint(seq, entry.hash)))
                return entry
            except (sa.exc.IntegrityError, sa.exc.OperationalError):
                # another process appended the same entry number first (or holds the write lock)
                time.sleep(min(0.001 * (attempt + 1), 0.05))
        raise SecurityError(f"could not append to the audit log after {_RETRIES} attempts (contention)")

    @contextlib.contextmanager
    def _write_transaction(self) -> Iterator[sa.Connection]:
        """A transaction that holds the write lock from its start. On SQLite a deferred one reads the head,
        then fails at once ("database is locked", no busy wait) when another process writes first, and two
        appenders in a loop could starve one; ``BEGIN IMMEDIATE`` waits on the busy timeout instead."""
        if self.engine.dialect.name != "sqlite":
            with self.engine.begin() as conn:
                yield conn
            return
        with self.engine.connect() as conn:
            conn.exec_driver_sql("BEGIN IMMEDIATE")
            try:
                yield conn
            except BaseException:
                conn.rollback()
                raise
            conn.commit()

    def _signed_long_ago(self, conn: sa.Connection, now: float) -> bool:
        """Whether the last signed entry was written ``checkpoint_interval`` or more before ``now``."""
        last = conn.execute(
            sa.select(entries_table.c.at)
            .select_from(
                checkpoints_table.join(entries_table, entries_table.c.seq == checkpoints_table.c.seq)
            )
            .order_by(checkpoints_table.c.seq.desc())
            .limit(1)
        ).first()
        since = float(last.at) if last is not None else self._first_at(conn)
        return since is not None and now - since >= self.checkpoint_interval

    @staticmethod
    def _first_at(conn: sa.Connection) -> float | None:
        first = conn.execute(sa.select(entries_table.c.at).order_by(entries_table.c.seq).limit(1)).first()
        return None if first is None else float(first.at)

    def _checkpoint(self, seq: int, digest: str) -> dict[str, Any]:
        signature = self.signing_key.sign(f"{seq}:{digest}".encode()).hex()
        return {
            "seq": seq,
            "hash": digest,
            "public_key": self.public_key,
            "signature": signature,
            "at": time.time(),
        }

    # reading -----------------------------------------------------------------------------------
    def entries(
        self, *, after: int = 0, limit: int | None = None, kind: str | None = None
    ) -> list[AuditEntry]:
        query = sa.select(entries_table).where(entries_table.c.seq > after).order_by(entries_table.c.seq)
        if kind is not None:
            query = query.where(entries_table.c.kind == kind)
        if limit is not None:
            query = query.limit(limit)
        with self.engine.connect() as conn:
            return [_row_entry(row) for row in conn.execute(query)]

    def find(self, kind: str, resource: str) -> AuditEntry | None:
        """The first entry of ``kind`` about ``resource`` (an approval's decision, to apply it once)."""
        query = (
            sa.select(entries_table)
            .where(entries_table.c.kind == kind, entries_table.c.resource == resource)
            .order_by(entries_table.c.seq)
            .limit(1)
        )
        with self.engine.connect() as conn:
            row = conn.execute(query).first()
        return None if row is None else _row_entry(row)

    def latest(self, kind: str, resource_prefix: str) -> AuditEntry | None:
        """The last entry of ``kind`` about a resource starting with ``resource_prefix`` (the latest
        decision of a run's calls: ``runs/ID#step``)."""
        query = (
            sa.select(entries_table)
            .where(
                entries_table.c.kind == kind,
                entries_table.c.resource.startswith(resource_prefix, autoescape=True),
            )
            .order_by(entries_table.c.seq.desc())
            .limit(1)
        )
        with self.engine.connect() as conn:
            row = conn.execute(query).first()
        return None if row is None else _row_entry(row)

    def tail(self, count: int = 20) -> list[AuditEntry]:
        query = sa.select(entries_table).order_by(entries_table.c.seq.desc()).limit(count)
        with self.engine.connect() as conn:
            return [_row_entry(row) for row in conn.execute(query)][::-1]

    def _scan(self, batch: int = 1000) -> Iterator[AuditEntry]:
        after = 0
        while page := self.entries(after=after, limit=batch):
            yield from page
            after = page[-1].seq

    # verifying ---------------------------------------------------------------------------------
    def verify(self) -> AuditVerification:
        """Walk the chain and the checkpoints; name the first entry that does not verify."""
        with self.engine.connect() as conn:
            checkpoints = {int(row.seq): row for row in conn.execute(sa.select(checkpoints_table))}
        prev, expected, count = GENESIS, 1, 0
        hashes: dict[int, str] = {}
        for entry in self._scan():
            bad = self._check_entry(entry, expected, prev)
            if bad:
                return AuditVerification(
                    ok=False, entries=count, checkpoints=len(checkpoints), first_bad=expected, problem=bad
                )
            if entry.seq in checkpoints:
                hashes[entry.seq] = entry.hash
            prev, expected, count = entry.hash, entry.seq + 1, count + 1
        for seq in sorted(checkpoints):
            bad = self._check_checkpoint(checkpoints[seq], hashes.get(seq))
            if bad:
                return AuditVerification(
                    ok=False, entries=count, checkpoints=len(checkpoints), first_bad=seq, problem=bad
                )
        signed = max(checkpoints, default=0)
        tail = self.entries(after=signed)
        first_bad, bad = self._check_tail(signed, tail)
        return AuditVerification(
            ok=not bad,
            entries=count,
            checkpoints=len(checkpoints),
            first_bad=first_bad,
            problem=bad,
            signed_through=signed,
            unsigned_tail=len(tail),
        )

    def _check_tail(self, signed: int, tail: list[AuditEntry]) -> tuple[int | None, str]:
        """The bounds ``append`` keeps on the unsigned tail, or the first entry that breaks one."""
        if not tail:
            return None, ""
        start = self.entries(after=signed - 1, limit=1)[0].at if signed else tail[0].at
        # Entry times are not checked for order: processes on several hosts disagree about the clock.
        for index, entry in enumerate(tail, start=1):
            if index >= self.checkpoint_every:
                return entry.seq, (
                    f"entry {entry.seq} is the {index}th after checkpoint {signed} and is not signed "
                    f"(a checkpoint is written every {self.checkpoint_every}): appended outside the log"
                )
            if entry.at - start >= self.checkpoint_interval:
                return entry.seq, (
                    f"entry {entry.seq} was written {entry.at - start:.0f} s after the last signed entry "
                    f"and is not signed (checkpoint_interval {self.checkpoint_interval:g} s): "
                    "appended outside the log"
                )
        return None, ""

    @staticmethod
    def _check_entry(entry: AuditEntry, expected: int, prev: str) -> str:
        if entry.seq != expected:
            return f"entry {expected} is missing (the next entry is {entry.seq}): deleted"
        if entry.prev != prev:
            return (
                f"entry {entry.seq} does not follow entry {entry.seq - 1} (its prev hash differs): "
                "inserted, deleted or reordered"
            )
        digest = entry_hash(entry)
        if digest != entry.hash:
            return f"entry {entry.seq} was edited (its content does not match its hash)"
        return ""

    def _check_checkpoint(self, row: Any, entry_hash_at: str | None) -> str:
        seq = int(row.seq)
        if entry_hash_at is None:
            return f"checkpoint {seq} signs an entry that is no longer in the log: truncated"
        if row.hash != entry_hash_at:
            return f"checkpoint {seq} signed another chain: entries up to {seq} were rewritten"
        if row.public_key != self.public_key:
            return f"checkpoint {seq} is signed by an unknown key {row.public_key[:16]}..."
        try:
            self.signing_key.public_key().verify(bytes.fromhex(row.signature), f"{seq}:{row.hash}".encode())
        except (InvalidSignature, ValueError):
            return f"checkpoint {seq} has a bad signature"
        return ""


def build_audit_log(settings: Settings) -> AuditLog:
    """The audit log of ``settings``: in ``security.audit.url`` (default: the main database), signed with
    ``security.audit.signing_key`` (default ``$SHOPFLOOR_HOME/audit/signing.pem``, created on first use)."""
    audit = settings.security.audit
    key = load_signing_key(audit.signing_key or settings.home / "audit" / "signing.pem")
    settings.ensure_home()
    return AuditLog.open(
        audit.url or settings.db_url,
        signing_key=key,
        checkpoint_every=audit.checkpoint_every,
        checkpoint_interval=audit.checkpoint_interval,
    )
