"""What each ingest of a collection recorded: its index version, where its documents came from (host
paths, or a workspace at the commit a ref resolved to), what it changed, and the digest of every document
the collection then held. A collection's index version is its newest record's (0 before any): a retrieval
names it, so an answer can be traced to the sources it was built from.

A run's start ingests its connector's sources again, and most such ingests change nothing: a record whose
digest set is its predecessor's (the same ``fingerprint``) stores none, and reading it takes the nearest
older one's (``from_rows``), so a collection's history grows by a row, not by its digest set, per run."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from shopfloor.telemetry import redact

__all__ = ["IndexVersion", "IngestRecord", "IngestSource", "fingerprint"]


def fingerprint(digests: dict[str, str]) -> str:
    """One sha256 over a digest set: two ingests with equal fingerprints indexed the same bytes."""
    return hashlib.sha256(json.dumps(sorted(digests.items())).encode()).hexdigest()


@dataclass(frozen=True, kw_only=True)
class IngestSource:
    """Where an ingest read its documents: ``paths`` on the host, or the ``paths`` (all of it when
    empty) of ``workspace`` at ``ref``, which resolved to ``commit``."""

    kind: Literal["paths", "workspace"]
    paths: tuple[str, ...] = ()
    workspace: str | None = None
    ref: str | None = None
    commit: str | None = None

    def to_json(self) -> dict[str, Any]:
        """What the ingest record keeps: a path holding a secret (``.../api_key=...``) is redacted,
        as every other persisted text is."""
        return {
            "kind": self.kind,
            "paths": [redact(path) for path in self.paths],
            "workspace": self.workspace,
            "ref": self.ref,
            "commit": self.commit,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> IngestSource:
        return cls(
            kind=data["kind"],
            paths=tuple(data.get("paths") or ()),
            workspace=data.get("workspace"),
            ref=data.get("ref"),
            commit=data.get("commit"),
        )

    def describe(self) -> str:
        if self.kind == "workspace":
            where = f"workspace {self.workspace}@{self.ref} (commit {(self.commit or '')[:12]})"
            return where + (f": {', '.join(self.paths)}" if self.paths else "")
        return ", ".join(self.paths)


@dataclass(frozen=True, kw_only=True)
class IndexVersion:
    """The version of a collection's index a retrieval read, and the workspace commit it was built
    from (None for host files, or before any ingest recorded one)."""

    collection: str
    version: int
    commit: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {"collection": self.collection, "version": self.version, "commit": self.commit}


@dataclass(frozen=True, kw_only=True)
class IngestRecord:
    version: int
    #: seconds since the epoch
    at: float
    source: IngestSource
    added: int
    replaced: int
    unchanged: int
    removed: int
    failed: int
    #: document id -> sha256 of its bytes: every document the collection held after the ingest
    digests: dict[str, str] = field(default_factory=dict, repr=False)

    @classmethod
    def from_row(cls, row: Sequence[Any]) -> IngestRecord:
        """From a stored row: (version, at, source, added, replaced, unchanged, removed, failed,
        digests), the source and digests JSON text or already decoded."""

        def decoded(value: Any) -> Any:
            return json.loads(value) if isinstance(value, str) else value

        return cls(
            version=int(row[0]),
            at=float(row[1]),
            source=IngestSource.from_json(decoded(row[2])),
            added=int(row[3]),
            replaced=int(row[4]),
            unchanged=int(row[5]),
            removed=int(row[6]),
            failed=int(row[7]),
            digests=decoded(row[8]),
        )

    @classmethod
    def from_rows(cls, rows: Sequence[Sequence[Any]], older: Callable[[int], Any]) -> list[IngestRecord]:
        """Records from stored rows, newest first, whose digests may be None (the same as the record
        before); ``older(version)``: the digests of the newest record before ``version`` that stored
        them (asked once at most, for the oldest rows here)."""
        records: list[IngestRecord] = []
        last: Any = None
        for row in reversed(rows):
            digests = row[8]
            if digests is None:
                digests = last if last is not None else older(int(row[0]))
            last = digests
            records.append(cls.from_row((*row[:8], {} if digests is None else digests)))
        return records[::-1]

    @property
    def fingerprint(self) -> str:
        return fingerprint(self.digests)

    def index_version(self, collection: str) -> IndexVersion:
        return IndexVersion(collection=collection, version=self.version, commit=self.source.commit)

    def to_json(self, *, digests: bool = False) -> dict[str, Any]:
        data: dict[str, Any] = {
            "version": self.version,
            "at": self.at,
            "source": self.source.to_json(),
            "added": self.added,
            "replaced": self.replaced,
            "unchanged": self.unchanged,
            "removed": self.removed,
            "failed": self.failed,
            "documents": len(self.digests),
            "fingerprint": self.fingerprint,
        }
        if digests:
            data["digests"] = dict(sorted(self.digests.items()))
        return data
