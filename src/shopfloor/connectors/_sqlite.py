"""SQLite for the SQL connector: the file opened read-only, an authorizer that allows only reading."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path
from typing import Any
from urllib.parse import quote

from shopfloor.connectors._sql import QueryResult, SqlBackend, json_cell
from shopfloor.errors import ConnectorError

__all__ = ["SqliteBackend"]

# What a read needs; everything else (writes, DDL, ATTACH, PRAGMA, transactions) is denied.
_ALLOWED = frozenset(
    {sqlite3.SQLITE_SELECT, sqlite3.SQLITE_READ, sqlite3.SQLITE_FUNCTION, sqlite3.SQLITE_RECURSIVE}
)
_DENIED_FUNCTIONS = frozenset({"load_extension", "readfile", "writefile", "edit", "fts3_tokenizer"})


def _authorize(action: int, arg1: str | None, arg2: str | None, _db: str | None, _trigger: str | None) -> int:
    if action not in _ALLOWED:
        return sqlite3.SQLITE_DENY
    if action == sqlite3.SQLITE_FUNCTION and (arg2 or "").lower() in _DENIED_FUNCTIONS:
        return sqlite3.SQLITE_DENY
    return sqlite3.SQLITE_OK


class SqliteBackend(SqlBackend):
    placeholders = "? (positional params) or :name (params by name)"

    def __init__(self, url: str, spec: Any) -> None:
        super().__init__(url, spec)
        path = url.partition("://")[2]
        if not path.startswith("/"):
            raise ConnectorError(f"expected sqlite:///ABSOLUTE/PATH, got {url!r}")
        self.path = Path(path[1:] if path.startswith("//") else path)

    def _connect(self) -> sqlite3.Connection:
        if not self.path.is_file():
            raise ConnectorError(f"no SQLite database at {self.path}")
        try:
            conn = sqlite3.connect(f"file:{quote(str(self.path))}?mode=ro", uri=True, timeout=5.0)
        except sqlite3.Error as exc:
            raise ConnectorError(f"cannot open {self.path}: {exc}") from None
        conn.execute("PRAGMA query_only = ON")
        conn.set_authorizer(_authorize)
        return conn

    def quote(self, identifier: str) -> str:
        return '"' + identifier.replace('"', '""') + '"'

    def tables(self) -> dict[str, list[tuple[str, str]]]:
        conn = self._connect()
        try:
            conn.set_authorizer(None)  # the catalogue is read through PRAGMA, which the authorizer denies
            listed = conn.execute(
                "SELECT name FROM sqlite_schema WHERE type IN ('table', 'view') AND name NOT LIKE 'sqlite_%'"
            )
            names = [row[0] for row in listed]
            return {
                name: [
                    (row[1], row[2] or "")
                    for row in conn.execute("SELECT * FROM pragma_table_info(?)", (name,))
                ]
                for name in names
            }
        except sqlite3.Error as exc:
            raise ConnectorError(f"reading the schema failed: {exc}") from None
        finally:
            conn.close()

    def query(self, sql: str, params: list[Any] | dict[str, Any] | None) -> QueryResult:
        conn = self._connect()
        deadline = time.monotonic() + self.spec.statement_timeout
        conn.set_progress_handler(lambda: int(time.monotonic() > deadline), 10_000)
        limit = self.spec.row_limit
        try:
            cursor = conn.execute(sql, params if params is not None else ())
            rows = cursor.fetchmany(limit + 1)
            columns = [column[0] for column in cursor.description or []]
        except sqlite3.DatabaseError as exc:
            message = str(exc)
            if message == "interrupted":
                message = f"the query ran longer than {self.spec.statement_timeout:g} s and was stopped"
            elif "not authorized" in message:
                message = "not authorized: the connection is read-only (only SELECT is allowed)"
            raise ConnectorError(f"the query failed: {message}") from None
        except (sqlite3.ProgrammingError, sqlite3.InterfaceError, ValueError, OverflowError) as exc:
            raise ConnectorError(f"the query failed: {exc}") from None
        finally:
            conn.close()
        return QueryResult(
            columns=columns,
            rows=[[json_cell(value) for value in row] for row in rows[:limit]],
            truncated=len(rows) > limit,
        )
