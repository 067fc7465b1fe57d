"""The console's workspace browser: the files at any commit, the history, diffs between commits, a file
shown as text, rendered Markdown (sanitised) or an image; read through the server's ``Workspaces``."""

# No `from __future__ import annotations`: FastAPI reads the pages' annotations (the local `Session`
# alias) when they are defined.

import difflib
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, FastAPI, Query, Request
from fastapi.responses import Response

from shopfloor.gateway.console._app import Console
from shopfloor.gateway.console._render import markdown_html
from shopfloor.gateway.console._sessions import ConsoleSession

__all__ = ["IMAGE_TYPES", "SideBySide", "side_by_side", "workspace_routes"]

#: images shown inline, by extension; SVG is not among them (it can carry script): it downloads
IMAGE_TYPES = {
    ".png": "image/png",
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".gif": "image/gif",
    ".webp": "image/webp",
}
#: a file larger than this is offered for download, not shown
MAX_SHOWN = 1024 * 1024
#: the raw bytes of a file: never a document of this origin (no script, no plug-in, no sniffing)
_RAW_CSP = "default-src 'none'; img-src 'self'; sandbox"

Rev = Annotated[str, Query(min_length=1, max_length=256, description="a ref or a commit id")]
FilePath = Annotated[str, Query(min_length=1, max_length=4096)]
DirPath = Annotated[str, Query(max_length=4096)]


def _extension(path: str) -> str:
    name = path.rpartition("/")[2].lower()
    return "." + name.rpartition(".")[2] if "." in name else ""


def _crumbs(path: str) -> list[tuple[str, str]]:
    """Each folder on the way to ``path``: (its name, its path)."""
    parts = [p for p in path.strip("/").split("/") if p]
    return [(part, "/".join(parts[: i + 1])) for i, part in enumerate(parts)]


#: a file longer than this (lines) is not compared side by side (the unified diff still shows it)
MAX_DIFF_LINES = 5000


@dataclass(frozen=True, kw_only=True)
class SideBySide:
    """One row of a side-by-side diff: a line of the old file and of the new one (None: none there)."""

    kind: str  # "ctx", "del", "add", "chg"
    old_no: int | None
    old: str | None
    new_no: int | None
    new: str | None


def side_by_side(old: str, new: str) -> list[SideBySide]:
    """The two texts aligned line by line (difflib's matching blocks)."""
    a, b = old.splitlines(), new.splitlines()
    rows: list[SideBySide] = []
    matcher = difflib.SequenceMatcher(None, a, b, autojunk=False)
    for tag, i1, i2, j1, j2 in matcher.get_opcodes():
        for k in range(max(i2 - i1, j2 - j1)):
            left = i1 + k if i1 + k < i2 else None
            right = j1 + k if j1 + k < j2 else None
            kind = (
                "ctx"
                if tag == "equal"
                else "chg"
                if left is not None and right is not None
                else "del"
                if right is None
                else "add"
            )
            rows.append(
                SideBySide(
                    kind=kind,
                    old_no=None if left is None else left + 1,
                    old=None if left is None else a[left],
                    new_no=None if right is None else right + 1,
                    new=None if right is None else b[right],
                )
            )
    return rows


def _text(data: bytes | None) -> str | None:
    if data is None:
        return ""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return None
    return text if text.count("\n") <= MAX_DIFF_LINES else None


def workspace_routes(app: FastAPI, console: Console) -> None:
    Session = Annotated[ConsoleSession, Depends(console.signed_in)]
    repo = console.plane.workspaces

    @app.get("/console/workspaces")
    async def workspaces(request: Request, session: Session) -> Response:
        found = [{"name": name, "refs": await repo.workspace(name).refs()} for name in await repo.names()]
        return console.render(request, "workspaces.html", workspaces=found)

    @app.get("/console/workspaces/{name}")
    async def browse(
        request: Request, session: Session, name: str, rev: Rev = "main", path: DirPath = ""
    ) -> Response:
        workspace = repo.workspace(name)
        view = await workspace.checkout(rev)
        files = await view.ls(path)
        history = await workspace.log(view.base, limit=50) if view.base else []
        return console.render(
            request,
            "workspace.html",
            name=name,
            rev=rev,
            commit=view.base or "",
            path=path.strip("/"),
            crumbs=_crumbs(path),
            files=sorted(files, key=lambda f: (f.kind != "dir", f.path)),
            history=history,
        )

    @app.get("/console/workspaces/{name}/file")
    async def file(
        request: Request, session: Session, name: str, path: FilePath, rev: Rev = "main"
    ) -> Response:
        workspace = repo.workspace(name)
        commit = await workspace.resolve(rev)
        view = await workspace.checkout(commit)
        data = await view.read(path, length=MAX_SHOWN + 1)
        extension = _extension(path)
        shown: dict[str, object] = {"kind": "binary"}
        if extension in IMAGE_TYPES:
            shown = {"kind": "image"}
        elif len(data) > MAX_SHOWN:
            shown = {"kind": "large"}
        else:
            try:
                text = data.decode("utf-8")
            except UnicodeDecodeError:
                text = None
            if text is not None and extension in (".md", ".markdown"):
                shown = {"kind": "markdown", "html": markdown_html(text), "text": text}
            elif text is not None:
                shown = {"kind": "text", "text": text}
        return console.render(
            request,
            "file.html",
            name=name,
            rev=rev,
            commit=commit,
            path=path,
            crumbs=_crumbs(path.rpartition("/")[0]),
            shown=shown,
            size=len(data),
        )

    @app.get("/console/workspaces/{name}/raw")
    async def raw(
        request: Request, session: Session, name: str, path: FilePath, rev: Rev = "main"
    ) -> Response:
        workspace = repo.workspace(name)
        commit = await workspace.resolve(rev)
        data = await workspace.read(commit, path)
        media = IMAGE_TYPES.get(_extension(path))
        filename = path.rpartition("/")[2].encode("ascii", "replace").decode().replace('"', "_")
        disposition = "inline" if media else f'attachment; filename="{filename}"'
        return Response(
            data,
            media_type=media or "application/octet-stream",
            headers={"Content-Disposition": disposition, "Content-Security-Policy": _RAW_CSP},
        )

    @app.get("/console/workspaces/{name}/diff")
    async def diff(request: Request, session: Session, name: str, a: Rev, b: Rev = "main") -> Response:
        workspace = repo.workspace(name)
        changes = await workspace.diff(a, b)
        files = []
        for change in changes[:200]:
            if "dir" in (change.old.kind if change.old else "", change.new.kind if change.new else ""):
                continue
            before = await workspace.read(a, change.path) if change.old else None
            after = await workspace.read(b, change.path) if change.new else None
            old_text, new_text = _text(before), _text(after)
            rows = None if old_text is None or new_text is None else side_by_side(old_text, new_text)
            files.append({"path": change.path, "status": change.status, "rows": rows})
        return console.render(request, "diff.html", name=name, a=a, b=b, changes=changes, files=files)
