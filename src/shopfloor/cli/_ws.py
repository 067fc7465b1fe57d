"""``shopfloor ws``: inspect and manage versioned workspaces.

With ``SHOPFLOOR_URL`` set (and no ``--url``), ``ls``, ``cat``, ``log`` and ``diff`` read the server's
workspaces through its API and print what they print locally; the commands that write (``checkout``,
``restore``, ``gc``) stay on the machine that holds the store.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Callable, Coroutine
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, TypeVar
from urllib.parse import quote

import typer

from shopfloor.cli._app import app, console, get_services, get_settings, print_json
from shopfloor.config import ClientSettings
from shopfloor.workspace import Workspaces, parse_address

__all__ = ["ws_app"]

ws_app = typer.Typer(
    help="Versioned workspaces: list, read, history, diff, checkout, restore, gc.", no_args_is_help=True
)
app.add_typer(ws_app, name="ws")

T = TypeVar("T")
UrlOpt = Annotated[str | None, typer.Option("--url", help="workspace store URL (default: from settings)")]
JsonOpt = Annotated[bool, typer.Option("--json", help="print JSON for scripts")]


def _run(url: str | None, body: Callable[[Workspaces], Coroutine[Any, Any, T]]) -> T:
    repo = get_services().workspaces(url)
    try:
        return asyncio.run(body(repo))
    finally:
        repo.close()


def _server(url: str | None) -> ClientSettings | None:
    """The server to read from: SHOPFLOOR_URL's, unless ``--url`` names a store here."""
    client = get_settings().client
    return client if client.url and url is None else None


def _get(client: ClientSettings, name: str, what: str, **params: Any) -> Any:
    from shopfloor.cli._remote import remote_get

    return remote_get(client, f"/v1/workspaces/{quote(name, safe='')}/{what}", params)


def _when(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M:%S")


@ws_app.command("ls")
def ls_cmd(
    target: Annotated[str | None, typer.Argument(help="NAME, NAME:path or ws://NAME@COMMIT/path")] = None,
    url: UrlOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """List workspaces, or the files of one at a commit."""
    server = _server(url)

    async def body(repo: Workspaces) -> Any:
        if target is None:
            rows = []
            for name in await repo.names():
                ws = repo.workspace(name)
                rows.append({"name": name, "refs": await ws.refs()})
            return rows
        address = parse_address(target if (":" in target) else f"{target}:")
        view = await repo.workspace(address.workspace).checkout(address.rev)
        return {"commit": view.base, "files": [i.to_json() for i in await view.ls(address.path)]}

    if server is None:
        result = _run(url, body)
    elif target is None:
        from shopfloor.cli._remote import remote_get

        result = remote_get(server, "/v1/workspaces").json()
    else:
        address = parse_address(target if (":" in target) else f"{target}:")
        result = _get(server, address.workspace, "ls", rev=address.rev, path=address.path).json()
    if json_out:
        print_json(result)
    elif target is None:
        for row in result:
            console.print(
                f"{row['name']}  " + " ".join(f"{r}={c[:12]}" for r, c in sorted(row["refs"].items()))
            )
    else:
        for item in result["files"]:
            size = "-" if item["kind"] == "dir" else str(item["size"])
            console.print(
                f"{item['kind']:4} {size:>10}  {item['path']}{'/' if item['kind'] == 'dir' else ''}"
            )


@ws_app.command("cat")
def cat_cmd(
    address: Annotated[str, typer.Argument(help="ws://NAME@COMMIT/path or NAME:path (at main)")],
    url: UrlOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Print a file of a workspace at a commit."""

    async def body(repo: Workspaces) -> tuple[str, bytes]:
        parsed = parse_address(address)
        view = await repo.workspace(parsed.workspace).checkout(parsed.rev)
        assert view.base is not None
        return view.base, await view.read(parsed.path)

    server = _server(url)
    if server is None:
        commit, data = _run(url, body)
    else:
        parsed = parse_address(address)
        response = _get(server, parsed.workspace, "file", path=parsed.path, rev=parsed.rev)
        commit, data = response.headers["x-shopfloor-commit"], response.content
    if json_out:
        print_json({"commit": commit, "address": address, "content": data.decode("utf-8", "replace")})
    else:
        sys.stdout.buffer.write(data)
        sys.stdout.flush()


@ws_app.command("log")
def log_cmd(
    name: str,
    ref: Annotated[str, typer.Option(help="ref or commit to start from")] = "main",
    limit: Annotated[int | None, typer.Option("-n", "--limit", help="at most this many commits")] = None,
    url: UrlOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Show a workspace's commits, newest first."""
    server = _server(url)
    if server is None:
        commits = [c.to_json() for c in _run(url, lambda repo: repo.workspace(name).log(ref, limit=limit))]
    else:
        commits = _get(server, name, "log", ref=ref, limit=limit).json()
    if json_out:
        print_json(commits)
        return
    for c in commits:
        where = f" run={c['run_id']} step={c['step']}" if c["run_id"] else ""
        console.print(
            f"[yellow]{c['id'][:12]}[/] {_when(c['time'])}{where} {c['identity'] or ''}  {c['message']}"
        )


@ws_app.command("diff")
def diff_cmd(
    name: str,
    a: str,
    b: Annotated[str, typer.Argument()] = "main",
    text: Annotated[bool, typer.Option("--text", help="show unified text diffs")] = False,
    url: UrlOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Show what changed between two commits (added, changed, deleted)."""

    async def body(repo: Workspaces) -> tuple[list[Any], str]:
        ws = repo.workspace(name)
        changes = await ws.diff(a, b)
        return [c.to_json() for c in changes], (await ws.text_diff(a, b) if text or json_out else "")

    server = _server(url)
    if server is None:
        changes, patch = _run(url, body)
    else:
        answer = _get(server, name, "diff", a=a, b=b).json()
        changes, patch = answer["changes"], answer["text"]
    if json_out:
        print_json({"changes": changes, "text": patch})
    elif text:
        sys.stdout.write(patch)
    else:
        for change in changes:
            console.print(f"{change['status'][0].upper()} {change['path']}", markup=False)


@ws_app.command("checkout")
def checkout_cmd(
    name: str,
    rev: str,
    directory: Path,
    read_only: Annotated[bool, typer.Option("--read-only", help="read-only files and directories")] = False,
    url: UrlOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Write the files of a commit into a directory."""

    async def body(repo: Workspaces) -> dict[str, Any]:
        ws = repo.workspace(name)
        commit = await ws.resolve(rev)
        path = await ws.materialize(commit, directory, read_only=read_only)
        return {"commit": commit, "directory": str(path)}

    result = _run(url, body)
    if json_out:
        print_json(result)
    else:
        console.print(f"checked out {result['commit'][:12]} into {result['directory']}")


@ws_app.command("restore")
def restore_cmd(
    name: str,
    rev: str,
    ref: Annotated[str, typer.Option(help="the ref that gets the new commit")] = "main",
    message: Annotated[str | None, typer.Option("-m", "--message")] = None,
    url: UrlOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Roll back: a new commit whose files are those of REV (history is kept)."""
    commit = _run(url, lambda repo: repo.workspace(name).restore(rev, ref=ref, message=message))
    if json_out:
        print_json({"commit": commit, "restored": rev, "ref": ref})
    else:
        console.print(f"restored {rev} as new commit {commit[:12]} on {ref}")


@ws_app.command("gc")
def gc_cmd(
    grace: Annotated[float, typer.Option(help="spare objects younger than this many seconds")] = 3600.0,
    url: UrlOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Apply retention and delete objects that no kept commit refers to."""
    report = _run(url, lambda repo: repo.gc(grace=grace))
    if json_out:
        print_json(report.to_json())
    else:
        console.print(
            f"kept {report.kept_commits} commits; deleted {report.deleted_commits} commits, "
            f"{report.deleted_trees} trees, {report.deleted_blobs} blobs ({report.deleted_bytes} bytes)"
        )
