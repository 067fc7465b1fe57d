"""A database as a connector: schema discovery and read-only queries, PostgreSQL and SQLite.

Read-only is enforced by the database, not by inspecting the text. PostgreSQL runs each query
in a ``READ ONLY`` transaction as a prepared statement (the extended protocol allows one
statement, so no ``; COMMIT; DELETE ...`` can end the transaction early), under a
``statement_timeout``. SQLite opens the file read-only with ``query_only`` and an authorizer
that allows reading and nothing else; a progress handler stops a query at its deadline. The
first keyword is checked too, only to give a clearer error. Parameters travel apart from the
SQL text, never spliced into it. Each database is a ``SqlBackend`` in the ``sql_backends()``
registry by URL scheme.
"""

from __future__ import annotations

import asyncio
import base64
import datetime
import decimal
import re
import uuid
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any

from shopfloor._registry import Registry
from shopfloor.connectors._base import Connector, Secrets, tool_name
from shopfloor.errors import ConnectorError
from shopfloor.spec import ConnectorSpec, SqlConnectorSpec
from shopfloor.tools import Tool, ToolContext

__all__ = ["QueryResult", "SqlBackend", "SqlConnector", "sql_backends"]

_READ_KEYWORDS = ("select", "with", "values", "table", "explain", "show")
_FIRST_WORD = re.compile(r"^\s*(?:(?:--[^\n]*\n|/\*.*?\*/)\s*)*([A-Za-z]+)", re.DOTALL)
_MAX_SQL_CHARS = 20_000
_MAX_CELL_CHARS = 2_000
_MAX_CELL_ITEMS = 200


@dataclass(frozen=True, kw_only=True)
class QueryResult:
    columns: list[str]
    rows: list[list[Any]]
    #: more rows matched than the row limit let through
    truncated: bool


def json_cell(value: Any) -> Any:
    """A database value as JSON: numbers and text as they are, dates in ISO form, bytes in base64."""
    if value is None or isinstance(value, bool | int | float):
        return value
    if isinstance(value, decimal.Decimal):
        return float(value)
    if isinstance(value, datetime.date | datetime.time):
        return value.isoformat()
    if isinstance(value, bytes | bytearray | memoryview):
        return "base64:" + base64.b64encode(bytes(value)[:_MAX_CELL_CHARS]).decode()
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, list | tuple):
        return [json_cell(item) for item in value[:_MAX_CELL_ITEMS]]
    if isinstance(value, dict):
        return {str(key): json_cell(item) for key, item in list(value.items())[:_MAX_CELL_ITEMS]}
    text = value if isinstance(value, str) else str(value)
    return text if len(text) <= _MAX_CELL_CHARS else text[:_MAX_CELL_CHARS] + "..."


class SqlBackend(ABC):
    """One kind of database. Methods are blocking (run in a worker thread) and raise ConnectorError."""

    #: how a query writes parameters, for the tool's description
    placeholders: str

    def __init__(self, url: str, spec: SqlConnectorSpec) -> None:
        self.url = url
        self.spec = spec

    @abstractmethod
    def tables(self) -> dict[str, list[tuple[str, str]]]:
        """Each table and view: its columns as (name, type)."""

    @abstractmethod
    def query(self, sql: str, params: list[Any] | dict[str, Any] | None) -> QueryResult:
        """Run one read-only statement with at most ``spec.row_limit`` rows back."""

    @abstractmethod
    def quote(self, identifier: str) -> str:
        """``identifier`` quoted for this database's SQL."""


def sql_backends() -> Registry[type[SqlBackend]]:
    """The databases by URL scheme."""
    return Registry(
        "SQL connector database",
        {
            "postgresql": "shopfloor.connectors._postgres:PostgresBackend",
            "postgres": "shopfloor.connectors._postgres:PostgresBackend",
            "sqlite": "shopfloor.connectors._sqlite:SqliteBackend",
        },
    )


def check_read_only(sql: str) -> None:
    """A clear error for SQL that is not a single read-only statement (the database enforces it too)."""
    if len(sql) > _MAX_SQL_CHARS:
        raise ConnectorError(f"the query is {len(sql)} characters long; at most {_MAX_SQL_CHARS} are allowed")
    match = _FIRST_WORD.match(sql)
    word = match.group(1).lower() if match else ""
    if word not in _READ_KEYWORDS:
        raise ConnectorError(
            f"only read-only queries are allowed ({', '.join(k.upper() for k in _READ_KEYWORDS)}); "
            f"this one starts with {word.upper() or 'nothing'}"
        )


class SqlConnector(Connector):
    def __init__(
        self, spec: ConnectorSpec, secrets: Secrets, backends: Registry[type[SqlBackend]] | None = None
    ) -> None:
        super().__init__(spec, secrets)
        assert spec.sql is not None
        self.sql = spec.sql
        self._backends = backends or sql_backends()
        self._backend: SqlBackend | None = None

    def backend(self) -> SqlBackend:
        if self._backend is None:
            url = self.secrets.resolve(self.sql.url, where=f"connector {self.name!r}: sql.url")
            scheme = url.partition("://")[0].split("+")[0]
            if scheme not in self._backends:
                raise ConnectorError(
                    f"connector {self.name!r}: no SQL database for {scheme!r} URLs; "
                    f"known: {', '.join(self._backends.names())}"
                )
            self._backend = self._backends.get(scheme)(url, self.sql)
        return self._backend

    async def _run(self, what: str, work: Any, *args: Any) -> Any:
        # The database enforces the statement timeout; this one only covers a connection that hangs.
        try:
            async with asyncio.timeout(self.sql.statement_timeout + 15):
                return await asyncio.to_thread(work, *args)
        except TimeoutError:
            raise ConnectorError(f"{self.name}: {what} did not finish in time") from None
        except ConnectorError as exc:
            raise ConnectorError(self.secrets.scrub(f"{self.name}: {exc}")) from None

    async def schema(self, table: str | None = None) -> list[dict[str, Any]]:
        """Tables with their columns, types and a few sample rows (or one table's)."""
        backend = self.backend()
        tables = await self._run("schema discovery", backend.tables)
        if table is not None:
            if table not in tables:
                raise ConnectorError(
                    f"{self.name}: no table {table!r}; tables: {', '.join(sorted(tables))[:2000]}"
                )
            tables = {table: tables[table]}
        described = []
        for name, columns in sorted(tables.items())[:200]:
            entry: dict[str, Any] = {"table": name, "columns": [{"name": c, "type": t} for c, t in columns]}
            if self.sql.sample_rows:
                sample = f"SELECT * FROM {backend.quote(name)} LIMIT {int(self.sql.sample_rows)}"
                entry["sample_rows"] = (await self._run("sampling", backend.query, sample, None)).rows
            described.append(entry)
        return described

    async def query(self, sql: str, params: list[Any] | dict[str, Any] | None = None) -> dict[str, Any]:
        check_read_only(sql)
        result: QueryResult = await self._run("the query", self.backend().query, sql, params)
        return {"columns": result.columns, "rows": result.rows, "truncated": result.truncated}

    async def tools(self) -> list[Tool]:
        tools: list[Tool] = [_SchemaTool(self), _QueryTool(self)]
        return self.allowed(tools, lambda tool: tool.name.rpartition("__")[2])

    async def aclose(self) -> None:
        self._backend = None


class _SchemaTool(Tool):
    kind = "datastore"

    def __init__(self, connector: SqlConnector) -> None:
        self.connector = connector
        self.name = tool_name(connector.name, "schema")
        self.description = (
            f"The tables of the {connector.name} database: columns, types and sample rows "
            "(all tables, or the one named)"
        )
        self.input_schema = {
            "type": "object",
            "properties": {"table": {"type": "string", "description": "one table (optional)"}},
            "additionalProperties": False,
        }

    async def call(self, args: dict[str, Any], ctx: ToolContext) -> Any:
        return await self.connector.schema(args.get("table"))


class _QueryTool(Tool):
    kind = "datastore"

    def __init__(self, connector: SqlConnector) -> None:
        self.connector = connector
        self.name = tool_name(connector.name, "query")
        sql = connector.sql
        self.description = (
            f"Run one read-only SQL query (SELECT) on the {connector.name} database; at most "
            f"{sql.row_limit} rows come back. Pass values as params, never inside the SQL"
        )
        self.input_schema = {
            "type": "object",
            "properties": {
                "sql": {"type": "string", "maxLength": _MAX_SQL_CHARS, "description": "one SELECT statement"},
                "params": {
                    "type": ["array", "object"],
                    "description": "values of the query's placeholders (positional or by name)",
                },
            },
            "required": ["sql"],
            "additionalProperties": False,
        }

    async def details(self) -> str | None:
        return f"Placeholders: {self.connector.backend().placeholders}."

    async def call(self, args: dict[str, Any], ctx: ToolContext) -> Any:
        return await self.connector.query(str(args["sql"]), args.get("params"))
