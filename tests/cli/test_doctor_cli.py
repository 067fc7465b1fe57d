"""``shopfloor doctor``: one table, --json list, always exit 0."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from shopfloor.cli import app
from shopfloor.diagnostics import BUILTIN_CHECKS

runner = CliRunner()


def test_doctor_json_lists_every_builtin_check() -> None:
    result = runner.invoke(app, ["doctor", "--json"])
    assert result.exit_code == 0, result.output
    checks = json.loads(result.stdout)
    names = [check["name"] for check in checks]
    assert names[: len(BUILTIN_CHECKS)] == list(BUILTIN_CHECKS)
    for check in checks:
        assert set(check) == {"name", "status", "detail", "fix", "data"}
        assert check["status"] in {"ok", "warn", "missing"}
    python = next(check for check in checks if check["name"] == "python")
    assert python["status"] == "ok"


def test_doctor_table_shows_fixes_and_exits_0() -> None:
    # A fresh SHOPFLOOR_HOME has no model, so at least that line carries a fix.
    result = runner.invoke(app, ["doctor"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert "shopfloor doctor" in result.output
    assert "✗ missing" in result.output
    assert "shopfloor models install qwen2.5-coder-0.5b" in result.output
    assert "landlock" in result.output
    assert result.output.strip().splitlines()[-1].endswith("missing")
