"""The root Typer app and what every command shares: settings, console, JSON output."""

from __future__ import annotations

import json
import sys
from typing import TYPE_CHECKING, Any

import typer
from rich.console import Console
from typer.core import TyperGroup

from shopfloor.config import Settings, load_settings
from shopfloor.errors import ShopfloorError

if TYPE_CHECKING:  # imported where used: `shopfloor --help` need not load DBOS and the agent
    from shopfloor.runtime import Services
    from shopfloor.security import Authorizer

__all__ = [
    "app",
    "console",
    "err_console",
    "get_services",
    "get_settings",
    "guarded_app",
    "print_json",
    "run_app",
]

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
    """The process's services, from the composition root; a run started by agent name goes to the
    release its deployment picks, and a canary's sampled runs are judged where a judge model is set."""
    from shopfloor.ops.releases import DeploymentRouter
    from shopfloor.runtime import compose

    settings = get_settings()
    judge = None
    if settings.releases.judge_model is not None:  # (the evaluation layer is imported only then)
        from shopfloor.evals import RunQualityJudge

        judge = RunQualityJudge()
    return compose(settings, run_router=DeploymentRouter(), run_judge=judge, evaluations=finished_evaluations)


def finished_evaluations(services: Services, digest: str) -> list[dict[str, Any]]:
    """The evaluations run on an agent digest (the evaluation layer, imported at first use)."""
    from shopfloor.evals import finished_evaluations as found

    return found(services, digest)


def print_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2, default=str) + "\n")


def guarded_app() -> TyperGroup:
    """The command line as the local administrator: every command authorised first (``cli/_guard.py``);
    a refusal is appended to the audit log."""
    from shopfloor.cli._guard import guarded_command
    from shopfloor.security import LOCAL_ADMIN, audit_denial, build_audit_log, build_authorizer

    def authorizer() -> Authorizer:
        settings = get_settings()

        def on_deny(*denial: Any) -> None:
            with build_audit_log(settings) as audit:
                audit_denial(audit, *denial)

        return build_authorizer(settings, on_deny=on_deny)

    return guarded_command(app, LOCAL_ADMIN, authorizer)


def run_app() -> None:
    """Entry point: user-caused errors print as one clear message and exit 2, not a traceback."""
    try:
        guarded_app()()
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
