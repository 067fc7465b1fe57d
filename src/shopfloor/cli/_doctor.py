"""``shopfloor doctor``: one screen of what this machine offers and what is missing, with fixes."""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict
from typing import Annotated

import typer
from rich.table import Table
from rich.text import Text

from shopfloor.cli._app import app, console, get_services, print_json
from shopfloor.diagnostics import CheckResult, run_checks

_STYLE = {"ok": ("✓ ok", "green"), "warn": ("! warn", "yellow"), "missing": ("✗ missing", "red")}


def _identity() -> CheckResult:
    """Who the local command line acts as: the machine's administrator (no key, no server)."""
    from shopfloor.security import LOCAL_ADMIN

    roles = ", ".join(LOCAL_ADMIN.roles)
    return CheckResult(
        name="identity",
        status="ok",
        detail=f"local CLI mode: acting as {LOCAL_ADMIN.id} ({roles}: every permission)",
        data={"principal": LOCAL_ADMIN.id, "roles": list(LOCAL_ADMIN.roles), "mode": "local"},
    )


@app.command("doctor")
def doctor_cmd(
    json_output: Annotated[bool, typer.Option("--json", help="print the checks as a JSON list")] = False,
) -> None:
    """Say what this machine offers Shopfloor and what is missing, each with its fix (always exits 0)."""
    services = get_services()
    results = [*run_checks(services.settings, services.checks), _identity()]
    if json_output:
        print_json([asdict(result) for result in results])
        return
    table = Table(title="shopfloor doctor", title_justify="left", expand=False)
    table.add_column("status", no_wrap=True)
    table.add_column("check", style="bold", no_wrap=True)
    table.add_column("found")
    table.add_column("fix", style="cyan")
    for result in results:
        label, style = _STYLE[result.status]
        table.add_row(Text(label, style=style), result.name, Text(result.detail), Text(result.fix))
    console.print(table)
    counts = Counter(result.status for result in results)
    console.print(f"{counts['ok']} ok, {counts['warn']} warnings, {counts['missing']} missing")
