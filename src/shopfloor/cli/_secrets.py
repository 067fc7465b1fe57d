"""``shopfloor secrets set | ls | rm | rotate``: values come from stdin or a file, never from an argument
(where ``ps`` and shell history would keep them)."""

from __future__ import annotations

import getpass
import sys
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table

from shopfloor.cli._app import app, console, get_settings, print_json
from shopfloor.errors import SecretError

if TYPE_CHECKING:
    from shopfloor.security import SecretStore

__all__ = ["secrets_app"]

secrets_app = typer.Typer(
    help="Encrypted secrets for specs and configuration (secret:NAME).", no_args_is_help=True
)
app.add_typer(secrets_app, name="secrets")

Name = Annotated[str, typer.Argument(help="the secret's name, referenced as secret:NAME")]
FileOpt = Annotated[
    Path | None, typer.Option("--file", help="read the value from this file (default: stdin)")
]


def _store() -> SecretStore:
    from shopfloor.security import build_audit_log, build_secret_store

    settings = get_settings()
    return build_secret_store(settings, audit=build_audit_log(settings))


def _value(file: Path | None) -> str:
    if file is not None:
        try:
            text = file.read_text()
        except OSError as exc:
            raise SecretError(f"cannot read the secret's value from {file}: {exc.strerror}") from None
    elif sys.stdin.isatty():
        text = getpass.getpass("value: ")
    else:
        text = sys.stdin.read()
    return text[:-1] if text.endswith("\n") else text


def _set(name: str, file: Path | None, *, rotate: bool) -> None:
    from shopfloor.security import LOCAL_ADMIN

    value = _value(file)
    with _store() as store:
        info = store.set(name, value, actor=LOCAL_ADMIN.id, must_exist=rotate)
    console.print(f"{'rotated' if rotate else 'stored'} secret:{info.name} (version {info.version})")


@secrets_app.command("set")
def set_cmd(name: Name, file: FileOpt = None) -> None:
    """Store a secret (a new version if it exists); the value is read from stdin or --file."""
    _set(name, file, rotate=False)


@secrets_app.command("rotate")
def rotate_cmd(name: Name, file: FileOpt = None) -> None:
    """Replace an existing secret's value with a new version (stdin or --file)."""
    _set(name, file, rotate=True)


@secrets_app.command("ls")
def ls_cmd(json_out: Annotated[bool, typer.Option("--json", help="print JSON for scripts")] = False) -> None:
    """List secrets: names and versions, never values."""
    from dataclasses import asdict

    with _store() as store:
        infos = store.ls()
    if json_out:
        print_json([asdict(info) for info in infos])
        return
    table = Table("name", "version", "updated")
    for info in infos:
        table.add_row(
            info.name,
            str(info.version),
            datetime.fromtimestamp(info.updated_at).strftime("%Y-%m-%d %H:%M:%S"),
        )
    console.print(table)


@secrets_app.command("rm")
def rm_cmd(name: Name) -> None:
    """Delete a secret."""
    from shopfloor.security import LOCAL_ADMIN

    with _store() as store:
        store.rm(name, actor=LOCAL_ADMIN.id)
    console.print(f"deleted secret:{name}")
