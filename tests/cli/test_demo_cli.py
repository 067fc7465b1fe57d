"""``shopfloor demo``: the analyst's demo stays the default beside ``demo researcher``."""

from __future__ import annotations

from typer.testing import CliRunner

from shopfloor.cli import app

cli = CliRunner()


def test_the_analyst_stays_the_default_demo() -> None:
    shown = cli.invoke(app, ["demo", "--help"])
    assert shown.exit_code == 0 and "analyst" in shown.stdout and "researcher" in shown.stdout
    missing = cli.invoke(app, ["demo", "How many cars?", "--agent", "/no/such/analyst"])
    assert missing.exit_code != 0 and "/no/such/analyst" in str(missing.exception) + missing.output
