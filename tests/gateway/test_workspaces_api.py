"""Workspaces through the API: list, log, ls, a file at a commit, a diff, a commit as a tar stream."""

from __future__ import annotations

import asyncio
import io
import tarfile
from collections.abc import Iterator

import httpx
import pytest
from gateway_support import Keys, LiveServer

from shopfloor.config import Settings
from shopfloor.gateway import build_server
from shopfloor.workspace import Workspaces


async def _history(settings: Settings) -> tuple[str, str]:
    repo = Workspaces.from_settings(settings)
    try:
        ws = repo.workspace("notes")
        view = await ws.open()
        await view.write("a.txt", "one\n")
        await view.write("bin/run.sh", "echo hi\n", executable=True)
        first = await view.commit("first")
        view = await ws.open()
        await view.write("a.txt", "two\n")
        second = await view.commit("second")
        return first, second
    finally:
        repo.close()


@pytest.fixture
def api(settings: Settings, keys: Keys, live: list[LiveServer]) -> Iterator[httpx.Client]:
    live.append(LiveServer(build_server(settings, worker=False)))
    with httpx.Client(
        base_url=live[-1].url, timeout=30, headers={"Authorization": f"Bearer {keys.admin}"}
    ) as c:
        yield c


def test_workspaces_are_read_through_the_api(api: httpx.Client, settings: Settings) -> None:
    first, second = asyncio.run(_history(settings))
    assert api.get("/v1/workspaces").json() == [{"name": "notes", "refs": {"main": second}}]
    assert [c["id"] for c in api.get("/v1/workspaces/notes/log").json()] == [second, first]
    listed = api.get("/v1/workspaces/notes/ls", params={"rev": first}).json()
    assert listed["commit"] == first and {f["path"] for f in listed["files"]} >= {"a.txt", "bin"}
    old = api.get("/v1/workspaces/notes/file", params={"path": "a.txt", "rev": first})
    assert old.content == b"one\n" and old.headers["x-shopfloor-commit"] == first
    assert api.get("/v1/workspaces/notes/file", params={"path": "a.txt"}).content == b"two\n"
    diff = api.get("/v1/workspaces/notes/diff", params={"a": first, "b": second}).json()
    assert [(c["path"], c["status"]) for c in diff["changes"]] == [("a.txt", "changed")]
    assert "-one" in diff["text"] and "+two" in diff["text"]
    archive = api.get("/v1/workspaces/notes/archive", params={"rev": first})
    assert archive.headers["content-type"] == "application/x-tar"
    with tarfile.open(fileobj=io.BytesIO(archive.content)) as tar:
        files = {m.name: m for m in tar.getmembers() if m.isfile()}
        assert set(files) == {"a.txt", "bin/run.sh"}
        assert tar.extractfile(files["a.txt"]).read() == b"one\n"  # type: ignore[union-attr]
        assert files["bin/run.sh"].mode & 0o111
    assert api.get("/v1/workspaces/notes/file", params={"path": "nope.txt"}).status_code == 404
    assert api.get("/v1/workspaces/nobody/log").json() == []
    assert api.get("/v1/workspaces/notes/file", params={"path": "../../etc/passwd"}).status_code in (404, 422)
