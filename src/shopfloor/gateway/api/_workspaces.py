"""``/v1/workspaces``: list, log, ls, read a file at a commit, diff two commits, a commit as a tar stream."""

# No `from __future__ import annotations`: FastAPI reads the routes' annotations (the local `Caller`
# dependency alias among them) when they are defined.

import asyncio
import tarfile
from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query
from fastapi.responses import Response, StreamingResponse

from shopfloor.gateway._errors import ERRORS
from shopfloor.gateway.api._plane import ControlPlane
from shopfloor.security import Principal
from shopfloor.workspace import Workspaces

__all__ = ["tar_stream", "workspaces_router"]

Rev = Annotated[str, Query(min_length=1, max_length=256, description="a ref or a commit id")]
FilePath = Annotated[str, Query(min_length=1, max_length=4096, description="a path in the workspace")]
_BINARY: dict[int | str, dict[str, Any]] = {
    200: {"content": {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}}}
}
_TAR: dict[int | str, dict[str, Any]] = {
    200: {"content": {"application/x-tar": {"schema": {"type": "string", "format": "binary"}}}}
}


async def tar_stream(repo: Workspaces, name: str, commit: str) -> AsyncIterator[bytes]:
    """The files of ``commit`` as a POSIX tar, one member at a time (memory: the largest file)."""
    workspace = repo.workspace(name)
    entries = await workspace.files(commit)
    for path, entry in sorted(entries.items()):
        info = tarfile.TarInfo(path.lstrip("/"))
        info.mtime = int((await workspace.commit_info(commit)).time)
        if entry.kind == "dir":
            info.type, info.mode = tarfile.DIRTYPE, 0o755
            yield info.tobuf(format=tarfile.PAX_FORMAT)
            continue
        data = await asyncio.to_thread(repo.blob_sync, entry.blob)
        info.size, info.mode = len(data), 0o755 if entry.executable else 0o644
        yield info.tobuf(format=tarfile.PAX_FORMAT)
        yield data + b"\0" * (-len(data) % tarfile.BLOCKSIZE)
    yield b"\0" * (2 * tarfile.BLOCKSIZE)


def workspaces_router(plane: ControlPlane) -> APIRouter:
    router = APIRouter(prefix="/v1/workspaces", tags=["workspaces"], responses=ERRORS)
    repo = plane.workspaces
    Caller = Annotated[Principal, Depends(plane.principal)]

    @router.get("", summary="The workspaces and their refs")
    async def list_workspaces(caller: Caller) -> list[dict[str, Any]]:
        return [{"name": name, "refs": await repo.workspace(name).refs()} for name in await repo.names()]

    @router.get("/{name}/log", summary="Commits, newest first")
    async def log(
        name: str,
        caller: Caller,
        ref: Rev = "main",
        limit: Annotated[int | None, Query(ge=1, le=10_000)] = None,
    ) -> list[dict[str, Any]]:
        return [commit.to_json() for commit in await repo.workspace(name).log(ref, limit=limit)]

    @router.get("/{name}/ls", summary="The files under a path at a commit")
    async def ls(name: str, caller: Caller, rev: Rev = "main", path: str = "") -> dict[str, Any]:
        view = await repo.workspace(name).checkout(rev)
        return {"commit": view.base, "files": [item.to_json() for item in await view.ls(path)]}

    @router.get(
        "/{name}/file", summary="A file's bytes at a commit", response_class=Response, responses=_BINARY
    )
    async def read(name: str, caller: Caller, path: FilePath, rev: Rev = "main") -> Response:
        workspace = repo.workspace(name)
        commit = await workspace.resolve(rev)
        data = await workspace.read(commit, path)
        return Response(data, media_type="application/octet-stream", headers={"X-Shopfloor-Commit": commit})

    @router.get("/{name}/diff", summary="What changed between two commits")
    async def diff(name: str, caller: Caller, a: Rev, b: Rev = "main") -> dict[str, Any]:
        workspace = repo.workspace(name)
        changes = await workspace.diff(a, b)
        return {"changes": [c.to_json() for c in changes], "text": await workspace.text_diff(a, b)}

    @router.get(
        "/{name}/archive",
        summary="A commit's files as a tar stream",
        response_class=StreamingResponse,
        responses=_TAR,
    )
    async def archive(name: str, caller: Caller, rev: Rev = "main") -> StreamingResponse:
        commit = await repo.workspace(name).resolve(rev)
        return StreamingResponse(
            tar_stream(repo, name, commit),
            media_type="application/x-tar",
            headers={
                "Content-Disposition": f'attachment; filename="{name}-{commit[:12]}.tar"',
                "X-Shopfloor-Commit": commit,
            },
        )

    return router
