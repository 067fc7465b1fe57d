from __future__ import annotations

from importlib.metadata import version

from shopfloor.cli._app import app, console


@app.command("version")
def version_cmd() -> None:
    """Print Shopfloor's version."""
    console.print(version("shopfloor"))
