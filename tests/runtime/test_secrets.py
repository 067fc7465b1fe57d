"""Secrets planted in a run never reach a store, an export, an event or the terminal.

A tool's arguments carry a Stripe key, its error a Hugging Face token, and a second run
uses an OpenAI base URL with a password in it. After real runs through the CLI (with
full content recording and an OTLP HTTP collector on loopback), every byte the runs
left behind is searched: the SQLite run database with the DBOS tables, ``traces.db``,
the workspaces, the collector's request bodies, ``trace export`` (OTLP JSON), the CLI's
output and JSON log lines.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import sqlalchemy as sa
from typer.testing import CliRunner
from untrusted_agent import ARG_SECRET, CRASH_SECRET, ERROR_SECRET, write_untrusted_agent

from shopfloor.cli import app
from shopfloor.config import load_settings
from shopfloor.telemetry import REDACTED, JsonLogFormatter, trace_store_url

pytestmark = pytest.mark.usefixtures("db_url")
cli = CliRunner()
URL_PASSWORD = "Pw-9f8e7d6c5b4a"


@pytest.fixture
def collector(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[bytes]]:
    """An OTLP HTTP endpoint on loopback that keeps every request body."""
    bodies: list[bytes] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            bodies.append(self.rfile.read(int(self.headers.get("Content-Length", 0))))
            self.send_response(200)
            self.send_header("Content-Type", "application/x-protobuf")
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    monkeypatch.setenv("SHOPFLOOR_TELEMETRY__OTLP_HTTP_ENDPOINT", f"http://127.0.0.1:{server.server_port}")
    try:
        yield bodies
    finally:
        server.shutdown()
        server.server_close()


def _closed_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.mark.usefixtures("real_models")  # the OpenAI run only reaches a closed loopback port
def test_planted_secrets_are_nowhere(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, collector: list[bytes], db_url: str
) -> None:
    agent = write_untrusted_agent(tmp_path / "untrusted")
    monkeypatch.syspath_prepend(str(agent))
    monkeypatch.delitem(sys.modules, "untrusted_agent", raising=False)
    monkeypatch.setenv("SHOPFLOOR_TELEMETRY__RECORD_CONTENT", "true")
    monkeypatch.setenv("SHOPFLOOR_TELEMETRY__JSON_LOGS", "true")
    monkeypatch.setenv(
        "SHOPFLOOR_OPENAI__BASE_URL", f"http://user:{URL_PASSWORD}@127.0.0.1:{_closed_port()}/v1"
    )
    monkeypatch.setenv("SHOPFLOOR_OPENAI__MAX_RETRIES", "0")

    leaked = cli.invoke(app, ["run", str(agent), "leak"])
    assert leaked.exit_code == 0, leaked.output
    assert "upstream refused" in leaked.output and REDACTED in leaked.output
    failed = cli.invoke(app, ["run", str(agent), "leak", "--model", "openai:gpt-test"])
    assert failed.exit_code == 1, failed.output
    assert "127.0.0.1" in failed.output and f"user:{REDACTED}@" in failed.output  # the error says where
    crashed = cli.invoke(app, ["run", str(agent), "crash"])
    assert crashed.exit_code != 0 and "RuntimeError" in crashed.output + repr(crashed.exception)
    run_ids = [r.stdout.splitlines()[0].split()[1] for r in (leaked, failed, crashed)]
    exports = [cli.invoke(app, ["trace", "export", run_id]) for run_id in run_ids]
    assert all(e.exit_code == 0 for e in exports), [e.output for e in exports]
    assert "execute_tool leak" in exports[0].stdout  # the span is there, redacted

    home = Path(os.environ["SHOPFLOOR_HOME"])
    stored = sorted(path for path in home.rglob("*") if path.is_file())  # SQLite: runs, DBOS, traces
    assert collector and (db_url.startswith("postgresql") or any(p.name == "traces.db" for p in stored))
    rows = _database_text(db_url) + _database_text(trace_store_url(load_settings()))
    assert "execute_tool leak" in rows and "upstream refused" in rows  # the rows are searched
    texts = [leaked.output, failed.output, crashed.output, *(e.output for e in exports), rows]
    for secret in (ARG_SECRET, ERROR_SECRET, URL_PASSWORD, CRASH_SECRET):
        needle = secret.encode()
        assert not [path for path in stored if needle in path.read_bytes()], secret
        assert not [body for body in collector if needle in body], secret
        assert not [text for text in texts if secret in text], secret


def _database_text(url: str) -> str:
    """Every row of every table of the run database (DBOS's, the runs', the spans'), as text."""
    engine = sa.create_engine(url.replace("postgresql://", "postgresql+psycopg://", 1))
    try:
        with engine.connect() as conn:
            if url.startswith("sqlite"):
                rows = conn.execute(sa.text("SELECT name FROM sqlite_master WHERE type = 'table'"))
                tables = [f'"{name}"' for (name,) in rows]
            else:
                rows = conn.execute(
                    sa.text(
                        "SELECT table_schema, table_name FROM information_schema.tables "
                        "WHERE table_schema NOT IN ('pg_catalog', 'information_schema')"
                    )
                )
                tables = [f'"{schema}"."{name}"' for schema, name in rows]
            return "\n".join(
                repr(row) for table in tables for row in conn.execute(sa.text(f"SELECT * FROM {table}"))
            )
    finally:
        engine.dispose()


def test_json_log_lines_are_redacted() -> None:
    record = logging.LogRecord(
        "shopfloor", logging.ERROR, __file__, 1, "calling with %s", (ARG_SECRET,), None
    )
    record.url = f"https://bob:{URL_PASSWORD}@example.com/x"
    line = JsonLogFormatter().format(record)
    assert ARG_SECRET not in line and URL_PASSWORD not in line and REDACTED in line
    assert json.loads(line)["url"] == f"https://bob:{REDACTED}@example.com/x"
