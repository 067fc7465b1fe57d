"""The root Typer app and what every command shares: settings, console, JSON output."""

from __future__ import annotations

import json
import sys
from typing import TYPE_CHECKING, Any

import typer
from rich.console import Console

from shopfloor.config import Settings, load_settings
from shopfloor.errors import ShopfloorError

if TYPE_CHECKING:  # imported where used: `shopfloor --help` need not load DBOS and the agent
    from shopfloor.runtime import Services

__all__ = ["app", "console", "err_console", "get_services", "get_settings", "print_json", "run_app"]

app = typer.Typer(
    name="shopfloor",
    help="Shopfloor: run long-running AI agents durably, traced, sandboxed, with versioned workspaces.",
    no_args_is_help=True,
    rich_markup_mode="rich",
    pretty_exceptions_enable=False,
)
console = Console(highlight=False)
err_console = Console(stderr=True, highlight=False)


def get_settings() -> Settings:
    return load_settings()


def get_services() -> Services:
    """The process's services, from the composition root."""
    from shopfloor.runtime import compose

    return compose(get_settings())


def print_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2, default=str) + "\n")


def run_app() -> None:
    """Entry point: user-caused errors print as one clear message and exit 2, not a traceback."""
    try:
        app()
    except ShopfloorError as exc:
        # The message may quote a model's or a user's text (markup, secrets): plain and redacted.
        from rich.text import Text

        from shopfloor.cli._untrusted import untrusted
        from shopfloor.telemetry import redact

        err_console.print(
            Text.assemble(("error:", "bold red"), " ", untrusted(redact(str(exc)))), soft_wrap=True
        )
        raise SystemExit(2) from None


@app.callback()
def _root() -> None:
    """Shopfloor: run long-running AI agents durably, traced, sandboxed, with versioned workspaces."""
