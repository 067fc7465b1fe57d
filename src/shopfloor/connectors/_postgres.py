"""PostgreSQL for the SQL connector: psycopg 3, a READ ONLY transaction and a statement timeout."""

from __future__ import annotations

from typing import Any

import psycopg

from shopfloor.connectors._sql import QueryResult, SqlBackend, json_cell
from shopfloor.errors import ConnectorError

__all__ = ["PostgresBackend"]

_TABLES = """
SELECT c.table_name, c.column_name, c.data_type
FROM information_schema.columns c
JOIN information_schema.tables t ON t.table_schema = c.table_schema AND t.table_name = c.table_name
WHERE c.table_schema = ANY(current_schemas(false))
ORDER BY c.table_name, c.ordinal_position
"""


class PostgresBackend(SqlBackend):
    placeholders = "%s (positional params) or %(name)s (params by name); write a literal % as %%"

    def _connect(self) -> psycopg.Connection[Any]:
        url = self.url.replace("postgres://", "postgresql://", 1).replace(
            "postgresql+psycopg://", "postgresql://"
        )
        try:
            conn = psycopg.connect(url, connect_timeout=10, application_name="shopfloor-connector")
        except psycopg.Error as exc:
            raise ConnectorError(f"cannot connect to the database: {str(exc).splitlines()[0]}") from None
        conn.read_only = True
        return conn

    def quote(self, identifier: str) -> str:
        return '"' + identifier.replace('"', '""') + '"'

    def tables(self) -> dict[str, list[tuple[str, str]]]:
        found: dict[str, list[tuple[str, str]]] = {}
        for table, column, kind in self._rows(_TABLES, [], limit=100_000)[0]:
            found.setdefault(table, []).append((column, kind))
        return found

    def _rows(self, query: str, params: Any, *, limit: int) -> tuple[list[Any], list[str]]:
        with self._connect() as conn:
            try:
                with conn.transaction(), conn.cursor() as cursor:
                    timeout_ms = int(self.spec.statement_timeout * 1000)
                    cursor.execute("SELECT set_config('statement_timeout', %s, true)", [f"{timeout_ms}ms"])
                    # A prepared statement goes over the extended protocol even without parameters:
                    # one statement only, so no "; COMMIT; DELETE ..." can end the READ ONLY transaction.
                    text = query if params else query.replace("%", "%%")
                    cursor.execute(text, params or [], prepare=True)  # the user's SQL, never formatted
                    columns = [column.name for column in cursor.description or []]
                    rows = cursor.fetchmany(limit + 1) if cursor.description else []
            except psycopg.errors.QueryCanceled:
                raise ConnectorError(
                    f"the query ran longer than {self.spec.statement_timeout:g} s and was stopped"
                ) from None
            except psycopg.errors.SyntaxError as exc:
                if "multiple commands" in str(exc):
                    raise ConnectorError("the query failed: only one statement is allowed") from None
                raise ConnectorError(f"the query failed: {str(exc).splitlines()[0]}") from None
            except psycopg.errors.ReadOnlySqlTransaction:
                raise ConnectorError(
                    "refused: the connection is read-only (only SELECT is allowed)"
                ) from None
            except (psycopg.Error, TypeError, ValueError, KeyError, IndexError) as exc:
                first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
                raise ConnectorError(f"the query failed: {first}") from None
        return rows, columns

    def query(self, sql: str, params: list[Any] | dict[str, Any] | None) -> QueryResult:
        limit = self.spec.row_limit
        rows, columns = self._rows(sql, params, limit=limit)
        return QueryResult(
            columns=columns,
            rows=[[json_cell(value) for value in row] for row in rows[:limit]],
            truncated=len(rows) > limit,
        )
