"""``shopfloor gitops sync|watch|status|history|rollback REPO``: reconcile releases and deployments to a
git repository (a local path or any URL git fetches)."""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table
from rich.text import Text

from shopfloor.cli._app import app, console, err_console, get_services, print_json
from shopfloor.cli._untrusted import untrusted
from shopfloor.errors import ConfigError, ShopfloorError

if TYPE_CHECKING:
    from shopfloor.ops.gitops import GitOpsController, SyncResult

__all__ = ["gitops_app"]

gitops_app = typer.Typer(
    help="Reconcile releases and deployments to what a git repository declares.", no_args_is_help=True
)
app.add_typer(gitops_app, name="gitops")

RepoArg = Annotated[str, typer.Argument(help="the repository: a local path or a URL git can fetch")]
PathOpt = Annotated[str, typer.Option("--path", help="the directory of the desired state in the repository")]
BranchOpt = Annotated[
    str | None, typer.Option("--branch", help="the branch (default: the repository's HEAD)")
]
JsonOpt = Annotated[bool, typer.Option("--json", help="print JSON for scripts")]
PruneOpt = Annotated[bool, typer.Option("--prune", help="remove deployments deleted from git")]
HealOpt = Annotated[
    bool, typer.Option("--self-heal/--no-self-heal", help="revert deployments changed outside git")
]
KeyOpt = Annotated[
    str | None,
    typer.Option("--key", help="signing key of new releases: a name under $SHOPFLOOR_HOME/keys or a file"),
]
SignersOpt = Annotated[
    Path | None,
    typer.Option(
        "--allowed-signers", help="apply only commits SSH-signed by a key of this file (git's format)"
    ),
]
_INTERVAL = re.compile(r"^(\d{1,6})(s|m|h)?$")


def _interval(text: str) -> float:
    found = _INTERVAL.match(text.strip())
    if not found or int(found.group(1)) == 0:
        raise ConfigError(f"--interval {text[:40]!r}: a duration such as 30s, 5m or 1h")
    return int(found.group(1)) * {"s": 1, "m": 60, "h": 3600}[found.group(2) or "s"]


@contextmanager
def _controller(
    repo: str,
    *,
    path: str,
    branch: str | None,
    prune: bool = False,
    self_heal: bool = True,
    key: str | None = None,
    signers: Path | None = None,
) -> Iterator[GitOpsController]:
    from shopfloor.cli._releases import _release_key
    from shopfloor.ops.gitops import GitOpsController, GitSource
    from shopfloor.ops.releases import Releases

    services = get_services()
    try:
        settings = services.settings
        source = GitSource(repo, settings.home / "gitops" / "repos", branch=branch)
        signing: Callable[[], Path] = lambda: _release_key(key)  # noqa: E731 (resolved only when a release is made)
        with Releases(services) as releases:
            yield GitOpsController(
                releases,
                source,
                actor=f"gitops:{source.shown}",
                path=path,
                key=signing,
                prune=prune,
                self_heal=self_heal,
                allowed_signers=signers or settings.gitops.allowed_signers,
            )
    finally:
        services.close()


def _show(result: SyncResult, json_out: bool) -> None:
    if json_out:
        print_json(result.to_json())
        return
    style = {"failed": "bold red", "synced": "bold green"}.get(result.status, "bold")
    revision = (result.revision or "-")[:12]
    console.print(
        Text.assemble((result.status, style), f"  {revision}  ", untrusted(result.message, width=300))
    )
    if not result.objects:
        return
    table = Table("object", "sync", "health", "action", "diff", "declared at")
    for obj in result.objects:
        table.add_row(
            untrusted(obj.key),
            Text(obj.sync, style="green" if obj.sync == "Synced" else "yellow"),
            Text(obj.health, style={"Healthy": "green", "Degraded": "red"}.get(obj.health, "yellow")),
            obj.action or "-",
            untrusted("; ".join(obj.diff) or "-", width=120),
            untrusted(obj.where or "-"),
        )
    console.print(table)


@gitops_app.command("sync")
def sync_cmd(
    repo: RepoArg,
    path: PathOpt = "",
    branch: BranchOpt = None,
    prune: PruneOpt = False,
    self_heal: HealOpt = True,
    key: KeyOpt = None,
    allowed_signers: SignersOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Reconcile once; exit 2 when the commit cannot be applied (the previous state is kept)."""
    with _controller(
        repo, path=path, branch=branch, prune=prune, self_heal=self_heal, key=key, signers=allowed_signers
    ) as controller:
        result = controller.sync()
    _show(result, json_out)
    if result.status == "failed":
        raise typer.Exit(2)


@gitops_app.command("status")
def status_cmd(
    repo: RepoArg, path: PathOpt = "", branch: BranchOpt = None, json_out: JsonOpt = False
) -> None:
    """What differs between the repository and the control plane, per object; changes nothing."""
    with _controller(repo, path=path, branch=branch) as controller:
        result = controller.sync(dry_run=True)
    _show(result, json_out)
    if result.status == "failed":
        raise typer.Exit(2)


@gitops_app.command("watch")
def watch_cmd(
    repo: RepoArg,
    path: PathOpt = "",
    branch: BranchOpt = None,
    interval: Annotated[str, typer.Option("--interval", help="between syncs: 30s, 5m, 1h")] = "30s",
    count: Annotated[int | None, typer.Option("--count", min=1, help="stop after this many syncs")] = None,
    prune: PruneOpt = False,
    self_heal: HealOpt = True,
    key: KeyOpt = None,
    allowed_signers: SignersOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Sync every --interval until stopped (Ctrl-C); a failed sync is reported and retried next time."""
    pause = _interval(interval)
    done = 0
    with _controller(
        repo, path=path, branch=branch, prune=prune, self_heal=self_heal, key=key, signers=allowed_signers
    ) as controller:
        while count is None or done < count:
            try:
                _show(controller.sync(), json_out)
            except ShopfloorError as exc:  # a fetch that failed: the next round tries again
                err_console.print(Text.assemble(("error:", "bold red"), " ", untrusted(str(exc))))
            done += 1
            if count is None or done < count:
                time.sleep(pause)


@gitops_app.command("history")
def history_cmd(
    repo: RepoArg, path: PathOpt = "", branch: BranchOpt = None, json_out: JsonOpt = False
) -> None:
    """Every sync of this repository, newest first: the revision, what it changed, who."""
    with _controller(repo, path=path, branch=branch) as controller:
        records = controller.history()
    if json_out:
        print_json([r.to_json() for r in records])
        return
    table = Table("when", "status", "revision", "changes", "message")
    for r in records:
        table.add_row(
            datetime.fromtimestamp(r.at).strftime("%Y-%m-%d %H:%M:%S"),
            r.status,
            (r.revision or "-")[:12],
            str(len(r.changes)),
            untrusted(r.message, width=120),
        )
    console.print(table)


@gitops_app.command("rollback")
def rollback_cmd(
    repo: RepoArg,
    to: Annotated[
        str | None, typer.Option("--to", help="the revision (default: the one applied before)")
    ] = None,
    path: PathOpt = "",
    branch: BranchOpt = None,
    key: KeyOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Apply an earlier revision and hold it until the repository's head moves on."""
    with _controller(repo, path=path, branch=branch, key=key) as controller:
        result = controller.rollback(to)
    _show(result, json_out)
    if result.status == "failed":
        raise typer.Exit(2)
