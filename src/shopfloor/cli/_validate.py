"""``shopfloor validate PATH``: check an agent spec (or any registered kind of file)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.text import Text

from shopfloor.cli._app import app, console, get_services, print_json
from shopfloor.errors import ShopfloorError, SourceLocation, SpecError


def _problems(exc: ShopfloorError, path: Path) -> list[tuple[SourceLocation, str]]:
    if isinstance(exc, SpecError):
        return list(exc.problems)
    return [(SourceLocation(file=str(path)), str(exc))]


@app.command("validate")
def validate_cmd(
    path: Annotated[
        Path, typer.Argument(help="agent.yaml, a directory containing one, or a skill directory")
    ],
    json_output: Annotated[bool, typer.Option("--json", help="print the result as JSON")] = False,
) -> None:
    """Check a spec; print [green]ok NAME VERSION DIGEST[/] or each problem as file:line:col: message."""
    try:
        report = get_services().validate(path)
    except ShopfloorError as exc:
        problems = _problems(exc, path)
        if json_output:
            print_json(
                {
                    "ok": False,
                    "path": str(path),
                    "problems": [
                        {"file": loc.file, "line": loc.line, "column": loc.column, "message": message}
                        for loc, message in problems
                    ],
                }
            )
        else:
            for loc, message in problems:
                console.print(Text(f"{loc}: ", style="bold") + Text(message, style="red"), soft_wrap=True)
            count = len(problems)
            console.print(
                Text(f"{count} problem{'s' if count != 1 else ''} in {path}", style="red"), soft_wrap=True
            )
        raise typer.Exit(1) from None
    if json_output:
        result: dict[str, Any] = {"ok": True, **vars(report), "path": str(report.path)}
        print_json(result)
    else:
        console.print(
            Text("ok ", style="bold green") + Text(f"{report.name} {report.version} {report.digest}"),
            soft_wrap=True,
        )
