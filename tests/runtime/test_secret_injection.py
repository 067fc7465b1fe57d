"""A secret granted in the spec reaches the tool at call time and nothing else: after a run whose tool
echoes it in a result and quotes it in an error (with content recording on and an OTLP collector), the
value is in no file of the home (run database with DBOS's step records, trace store, workspaces), no row,
no exported body, no CLI output; its reads are in the audit log as the agent's."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
import test_secrets
from secret_agent import VALUE, write_secret_agent
from typer.testing import CliRunner

from shopfloor.cli import app
from shopfloor.config import load_settings
from shopfloor.security import build_audit_log
from shopfloor.telemetry import trace_store_url

pytestmark = pytest.mark.usefixtures("db_url")
cli = CliRunner()
#: the OTLP collector on loopback of the planted-secrets test, shared
collector = test_secrets.collector
_database_text = test_secrets._database_text


def test_a_granted_secret_is_injected_and_redacted_by_value_everywhere(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    request: pytest.FixtureRequest,
    db_url: str,
) -> None:
    bodies: list[bytes] = request.getfixturevalue("collector")
    agent = write_secret_agent(tmp_path / "keyed")
    monkeypatch.syspath_prepend(str(agent))
    monkeypatch.delitem(sys.modules, "secret_agent", raising=False)
    monkeypatch.setenv("SHOPFLOOR_TELEMETRY__RECORD_CONTENT", "true")
    monkeypatch.setenv("SHOPFLOOR_TELEMETRY__JSON_LOGS", "true")
    stored = cli.invoke(app, ["secrets", "set", "API_TOKEN"], input=VALUE)
    assert stored.exit_code == 0, stored.output

    ran = cli.invoke(app, ["run", str(agent), "go"])
    assert ran.exit_code == 0, ran.output
    run_id = ran.stdout.splitlines()[0].split()[1]
    logs = cli.invoke(app, ["runs", "logs", run_id])
    exported = cli.invoke(app, ["trace", "export", run_id])
    assert exported.exit_code == 0, exported.output
    assert "sent [REDACTED]" in exported.stdout and "length" in exported.stdout  # the tool ran with it
    assert "upstream refused the token [REDACTED]" in logs.stdout

    home = Path(os.environ["SHOPFLOOR_HOME"])
    files = sorted(path for path in home.rglob("*") if path.is_file())
    rows = _database_text(db_url) + _database_text(trace_store_url(load_settings()))
    assert "use_token" in rows
    needle = VALUE.encode()
    assert not [path for path in files if needle in path.read_bytes()]
    assert bodies and not [body for body in bodies if needle in body]
    assert not [text for text in (ran.output, logs.output, exported.output, rows) if VALUE in text]
    with build_audit_log(load_settings()) as audit:
        reads = audit.entries(kind="secret.read")
        assert audit.verify().ok
    assert [(e.actor, e.resource) for e in reads] == [("agent:keyed", "secrets/API_TOKEN")] * 2
