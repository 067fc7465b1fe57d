"""One uid per tenant, allocated from a persistent table so that two tenants never share one.

The table is SQLite, ``settings.sandbox.uid_table`` or ``$SHOPFLOOR_HOME/sandbox/tenants.db`` (installs that
share a host must share it, or take disjoint ranges): ``tenant`` is the primary key and
``uid`` is UNIQUE, and every allocation runs in one ``BEGIN IMMEDIATE`` transaction, so concurrent
allocations (threads or processes, one host) serialise and a uid can never be handed out twice. Uids
come from ``[settings.sandbox.uid_base, uid_base + settings.sandbox.uid_count)``; a tenant keeps its uid
for as long as the table and the range do.
"""

from __future__ import annotations

import os
import sqlite3
from contextlib import closing
from pathlib import Path

from shopfloor.config import Settings
from shopfloor.errors import SandboxPolicyError, SandboxUnavailableError

__all__ = ["prepare_workspace", "tenant_uid", "tenant_uid_table"]

_SCHEMA = "CREATE TABLE IF NOT EXISTS tenant_uids (tenant TEXT PRIMARY KEY, uid INTEGER NOT NULL UNIQUE)"
_BUSY_TIMEOUT = 30.0


def tenant_uid_table(settings: Settings) -> Path:
    return settings.sandbox.uid_table or settings.home / "sandbox" / "tenants.db"


def tenant_uid(tenant: str, settings: Settings) -> int:
    """The uid (= gid) of ``tenant``, allocating the lowest free one of the range at its first use.

    Blocking (SQLite): call from a worker thread in async code.
    """
    if not tenant:
        raise SandboxPolicyError("a sandbox needs a tenant name (its uid is allocated to that name)")
    base, count = settings.sandbox.uid_base, settings.sandbox.uid_count
    path = tenant_uid_table(settings)
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    with closing(sqlite3.connect(path, timeout=_BUSY_TIMEOUT, isolation_level=None)) as db:
        db.execute(_SCHEMA)
        db.execute("BEGIN IMMEDIATE")
        try:
            row = db.execute("SELECT uid FROM tenant_uids WHERE tenant = ?", (tenant,)).fetchone()
            if row is not None and base <= row[0] < base + count:
                db.execute("COMMIT")
                return int(row[0])
            if row is not None:  # the configured range moved: this tenant gets a uid inside it
                db.execute("DELETE FROM tenant_uids WHERE tenant = ?", (tenant,))
            uid = _lowest_free(db, base, count)
            if uid is None:
                raise SandboxUnavailableError(
                    f"no free tenant uid left in [{base}, {base + count}) ({path}): raise "
                    "sandbox.uid_count or move sandbox.uid_base in the settings"
                )
            db.execute("INSERT INTO tenant_uids (tenant, uid) VALUES (?, ?)", (tenant, uid))
            db.execute("COMMIT")
            return uid
        except BaseException:
            db.execute("ROLLBACK")
            raise


def _lowest_free(db: sqlite3.Connection, base: int, count: int) -> int | None:
    """The lowest uid of the range that no tenant holds (the range start, or one above a held uid)."""
    row = db.execute(
        "SELECT MIN(candidate) FROM ("
        " SELECT ? AS candidate UNION ALL SELECT uid + 1 FROM tenant_uids WHERE uid >= ? AND uid < ?"
        ") WHERE candidate < ? AND candidate NOT IN (SELECT uid FROM tenant_uids)",
        (base, base, base + count, base + count),
    ).fetchone()
    return None if row is None or row[0] is None else int(row[0])


def prepare_workspace(workspace: Path, uid: int) -> None:
    """Give the workspace to the tenant: owned by its uid, mode 0700 (blocking: run in a thread)."""
    workspace.mkdir(parents=True, exist_ok=True)
    if os.geteuid() != 0:
        return
    for directory, dirnames, filenames in os.walk(workspace):
        for name in dirnames + filenames:
            # lchown: a symlink planted in the workspace must not hand a host file to the tenant.
            os.lchown(os.path.join(directory, name), uid, uid)
    os.chown(workspace, uid, uid)
    os.chmod(workspace, 0o700)
