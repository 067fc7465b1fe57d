"""Connectors: the agent's data sources as tools (MCP servers over stdio or Streamable HTTP, SQL databases,
remote A2A agents).

``build_connectors(settings, secrets=...)`` makes a worker's pool; ``await pool.tools(spec.connectors)``
gives a run its connector tools, named ``CONNECTOR__TOOL``. Kinds are the ``connector_kinds()``
registry (``mcp``, ``sql``); databases the ``sql_backends()`` registry by URL scheme.
"""

from shopfloor.connectors._a2a import A2AConnector, A2ATool
from shopfloor.connectors._base import (
    Connector,
    ConnectorFactory,
    SecretResolver,
    Secrets,
    connector_kinds,
    tool_name,
)
from shopfloor.connectors._docs import ingest_sources, ingest_workspace_sources
from shopfloor.connectors._mcp import IDEMPOTENCY_META_KEY, McpConnector, McpTool
from shopfloor.connectors._pool import Connectors, build_connectors
from shopfloor.connectors._sql import QueryResult, SqlBackend, SqlConnector, sql_backends
from shopfloor.connectors._stdio import StdioProcess, stdio_transport
from shopfloor.connectors._supervise import BACKOFF_MAX, BACKOFF_START, McpSupervisor

__all__ = [
    "BACKOFF_MAX",
    "BACKOFF_START",
    "IDEMPOTENCY_META_KEY",
    "A2AConnector",
    "A2ATool",
    "Connector",
    "ConnectorFactory",
    "Connectors",
    "McpConnector",
    "McpSupervisor",
    "McpTool",
    "QueryResult",
    "SecretResolver",
    "Secrets",
    "SqlBackend",
    "SqlConnector",
    "StdioProcess",
    "build_connectors",
    "connector_kinds",
    "ingest_sources",
    "ingest_workspace_sources",
    "sql_backends",
    "stdio_transport",
    "tool_name",
]
