"""``shopfloor release|deploy|deployments|rollback``, ``runs feedback``, ``eval dataset from-feedback`` and
``run NAME`` from the command line: each with --json, errors as one clear message."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from shopfloor.cli import app
from shopfloor.errors import DeploymentError, ReleaseError

cli = CliRunner()


def _json(*args: str) -> Any:
    result = cli.invoke(app, [*args, "--json"])
    assert result.exit_code == 0, (result.output, result.exception)
    return json.loads(result.stdout)


@pytest.fixture
def agent(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("SHOPFLOOR_RUNTIME__POLL_INTERVAL", "0.05")
    path = tmp_path / "hello"
    path.mkdir()
    (path / "agent.yaml").write_text(
        "name: hello\ninstructions: Say hello.\nmodel: test\n"
        "tools:\n  - name: shout\n    source: tools.py:shout\n"
    )
    (path / "tools.py").write_text(
        'def shout(text: str) -> str:\n    """Shout."""\n    return text.upper()\n'
    )
    assert cli.invoke(app, ["skill", "keygen", "ops"]).exit_code == 0
    return path


def test_release_deploy_run_feedback_and_rollback_from_the_command_line(agent: Path, tmp_path: Path) -> None:
    made = _json("release", "create", str(agent), "--version", "1.0.0")
    assert made["created"] and made["ref"] == "hello@1.0.0" and made["files"].keys() == {"tools.py"}
    assert not _json("release", "create", str(agent), "--version", "1.0.0")["created"]
    (agent / "tools.py").write_text((agent / "tools.py").read_text() + "# 2\n")
    refused = cli.invoke(app, ["release", "create", str(agent), "--version", "1.0.0"])
    assert isinstance(refused.exception, ReleaseError) and "file tools.py: changed" in str(refused.exception)
    _json("release", "create", str(agent), "--version", "2.0.0")
    assert [r["ref"] for r in _json("release", "ls")] == ["hello@1.0.0", "hello@2.0.0"]
    assert _json("release", "show", "hello@2.0.0")["spec"]["version"] == "2.0.0"
    assert _json("release", "verify", "hello@2.0.0")["ok"] is True
    assert _json("release", "diff", "hello@1.0.0", "hello@2.0.0")["changes"] == [
        "spec.version: '1.0.0' -> '2.0.0'",
        "file tools.py: changed",
    ]
    assert _json("deploy", "hello@1.0.0")["stable"] == "1.0.0"
    canary = _json("deploy", "hello@2.0.0", "--canary", "10")
    assert (canary["candidate"], canary["canary"]) == ("2.0.0", 10)
    assert [d["agent"] for d in _json("deployments", "ls")] == ["hello"]
    run = _json("run", "hello", "say hi")
    assert run["status"] == "completed" and "/releases/hello/" in run["spec_path"]
    track = "candidate" if run["release"] == "hello@2.0.0" else "stable"
    assert (run["release"], run["track"]) == ("hello@2.0.0" if track == "candidate" else "hello@1.0.0", track)
    shown_run = cli.invoke(app, ["runs", "show", run["run_id"]])
    assert f"{run['release']} ({track} track)" in shown_run.output, shown_run.output
    rated = _json("runs", "feedback", run["run_id"][:10], "--rating", "-1", "--correction", "HI")
    assert rated["release"] in ("hello@1.0.0", "hello@2.0.0") and rated["author"] == "local-admin"
    out = tmp_path / "feedback.jsonl"
    made_items = cli.invoke(
        app, ["eval", "dataset", "from-feedback", "hello", "--since", "1h", "--out", str(out)]
    )
    assert made_items.exit_code == 0, made_items.output
    items = [json.loads(line) for line in out.read_text().splitlines()]
    assert [(i["input"], i["expected"]) for i in items] == [("say hi", "HI")]
    shown = _json("deployments", "show", "hello")
    assert sum(m["feedback_count"] for m in shown["metrics"]) == 1
    assert [(m["release"], m["track"]) for m in shown["metrics"]] == [
        ("hello@1.0.0", "stable"),
        ("hello@2.0.0", "candidate"),
    ]
    table = cli.invoke(app, ["deployments", "show", "hello"])
    assert "candidate" in table.output and "judged" in table.output, table.output
    assert [e["action"] for e in shown["history"]] == ["canary", "deploy"]
    assert _json("deployments", "evaluate", "hello", "--dry-run")["action"] == "wait"
    assert _json("rollback", "hello")["candidate"] is None
    failed = cli.invoke(app, ["rollback", "hello"])
    assert isinstance(failed.exception, DeploymentError) and "--to VERSION" in str(failed.exception)
    assert _json("rollback", "hello", "--to", "2.0.0")["stable"] == "2.0.0"
    audit = _json("audit", "ls", "--kind", "release.rolled_back")
    assert [e["actor"] for e in audit] == ["local-admin", "local-admin"]
