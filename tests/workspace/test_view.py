"""The file operations of a view, on the file backend (the property tests cover all backends)."""

from __future__ import annotations

from pathlib import Path

import pytest

from shopfloor.errors import (
    WorkspaceEditError,
    WorkspaceNotFoundError,
    WorkspacePathError,
    WorkspaceQuotaError,
    WorkspaceReadOnlyError,
)
from shopfloor.workspace import LocalDirMount, Quota, Workspaces


async def test_write_read_ranges_and_text(file_repo: Workspaces) -> None:
    view = await file_repo.workspace("w").open()
    await view.write("notes/a.txt", "hello world\n")
    await view.write("bin/run.sh", b"#!/bin/sh\n", executable=True)
    assert await view.read("notes/a.txt") == b"hello world\n"
    assert await view.read("notes/a.txt", offset=6, length=5) == b"world"
    assert await view.read_text("notes/a.txt", offset=6) == "world\n"
    info = await view.stat("bin/run.sh")
    assert (info.kind, info.size, info.executable) == ("file", 10, True)
    assert (await view.stat("notes")).kind == "dir"
    assert [(i.path, i.kind) for i in await view.ls()] == [("bin", "dir"), ("notes", "dir")]
    assert [i.path for i in await view.ls("notes")] == ["notes/a.txt"]
    await view.write("bad.bin", b"\xff\xfe")
    with pytest.raises(Exception, match="not utf-8 text"):
        await view.read_text("bad.bin")


async def test_missing_paths_and_file_directory_clashes(file_repo: Workspaces) -> None:
    view = await file_repo.workspace("w").open()
    await view.write("f", "x")
    with pytest.raises(WorkspaceNotFoundError):
        await view.read("nope")
    with pytest.raises(WorkspaceNotFoundError):
        await view.ls("nope")
    with pytest.raises(WorkspacePathError, match="is a file"):
        await view.write("f/child", "x")
    await view.write("d/x", "x")
    with pytest.raises(WorkspacePathError, match="is a directory"):
        await view.write("d", "x")
    with pytest.raises(WorkspacePathError, match="a file has that name"):
        await view.mkdir("f")
    for bad in ["../x", "/etc/passwd", "a\x00b", "n" * 300]:
        with pytest.raises(WorkspacePathError):
            await view.write(bad, "x")
        with pytest.raises(WorkspacePathError):
            await view.read(bad)


async def test_edit_exact_replace(file_repo: Workspaces) -> None:
    view = await file_repo.workspace("w").open()
    await view.write("a.py", "x = 1\ny = 1\n")
    with pytest.raises(WorkspaceEditError, match="not found"):
        await view.edit("a.py", "z = 1", "z = 2")
    with pytest.raises(WorkspaceEditError, match="appears 2 times"):
        await view.edit("a.py", "= 1", "= 2")
    assert await view.edit("a.py", "y = 1", "y = 2") == 1
    assert await view.read_text("a.py") == "x = 1\ny = 2\n"
    assert await view.edit("a.py", " = ", "=", replace_all=True) == 2
    assert await view.read_text("a.py") == "x=1\ny=2\n"


async def test_delete_move_mkdir(file_repo: Workspaces) -> None:
    view = await file_repo.workspace("w").open()
    await view.write("d/a", "a")
    await view.write("d/e/b", "b")
    await view.mkdir("empty")
    with pytest.raises(WorkspacePathError, match="not empty"):
        await view.delete("d")
    assert await view.move("d", "m") == "m"
    assert sorted(await view.glob("**")) == ["m/a", "m/e/b"]
    assert await view.move("m/a", "empty") == "empty/a"
    with pytest.raises(WorkspacePathError, match="into itself"):
        await view.move("m", "m/e/x")
    await view.write("c", "c")
    with pytest.raises(WorkspacePathError, match="exists"):
        await view.move("c", "empty/a")
    await view.move("c", "empty/a", overwrite=True)
    assert await view.read("empty/a") == b"c"
    assert await view.delete("m", recursive=True) == 1
    assert not await view.exists("m")
    commit = await view.commit("moved")
    files = await file_repo.workspace("w").files(commit)
    assert sorted(files) == ["empty/a"]


async def test_empty_directories_are_kept(file_repo: Workspaces) -> None:
    ws = file_repo.workspace("w")
    view = await ws.open()
    await view.mkdir("out/logs")
    await view.commit("dirs")
    view2 = await ws.checkout()
    assert (await view2.stat("out/logs")).kind == "dir"
    assert [i.path for i in await view2.ls("out")] == ["out/logs"]


async def test_glob_and_grep(file_repo: Workspaces) -> None:
    view = await file_repo.workspace("w").open()
    await view.write("src/a.py", "import os\nprint('TODO later')\n")
    await view.write("src/pkg/b.py", "# todo: more\n")
    await view.write("README.md", "todo list\n")
    await view.write("blob.bin", b"\x00todo")
    assert await view.glob("**/*.py") == ["src/a.py", "src/pkg/b.py"]
    assert await view.glob("*.md") == ["README.md"]
    hits = await view.grep("todo", ignore_case=True, glob="**/*.py")
    assert [(m.path, m.line) for m in hits] == [("src/a.py", 2), ("src/pkg/b.py", 1)]
    assert [m.path for m in await view.grep("todo")] == ["README.md", "src/pkg/b.py"]
    assert [m.path for m in await view.grep("todo", path="src")] == ["src/pkg/b.py"]
    with pytest.raises(Exception, match="not a valid regular expression"):
        await view.grep("(")


async def test_checkout_is_read_only(file_repo: Workspaces) -> None:
    ws = file_repo.workspace("w")
    view = await ws.open()
    await view.write("a", "1")
    first = await view.commit("one")
    checkout = await ws.checkout(first)
    for attempt in (
        checkout.write("a", "2"),
        checkout.delete("a"),
        checkout.mkdir("x"),
        checkout.commit("no"),
    ):
        with pytest.raises(WorkspaceReadOnlyError):
            await attempt
    assert await checkout.read("a") == b"1"


@pytest.mark.parametrize(
    ("quota", "path", "size", "why"),
    [
        (Quota(max_file_bytes=10), "big", 11, "file size limit"),
        (Quota(max_bytes=25), "more", 6, "limit of 25"),
        (Quota(max_files=2), "third", 1, "limit of 2"),
    ],
)
async def test_quota_refuses_whole_write(
    file_repo: Workspaces, quota: Quota, path: str, size: int, why: str
) -> None:
    view = await file_repo.workspace("w", quota=quota).open()
    await view.write("one", b"x" * 10)
    await view.write("two", b"y" * 10)
    before = (view.total_bytes, view.file_count)
    with pytest.raises(WorkspaceQuotaError, match=why):
        await view.write(path, b"z" * size)
    assert (view.total_bytes, view.file_count) == before
    assert not await view.exists(path)
    commit = await view.commit("after quota error")
    assert sorted(await file_repo.workspace("w").files(commit)) == ["one", "two"]
    # replacing a file within the limits is fine: the old size is given back
    await view.write("one", b"q" * 5)
    assert view.total_bytes == 15


async def test_local_mount_is_read_only_and_confined(file_repo: Workspaces, tmp_path: Path) -> None:
    lake = tmp_path / "lake"
    (lake / "sub").mkdir(parents=True)
    (lake / "sub" / "data.csv").write_text("a,b\n1,2\n")
    (tmp_path / "secret").write_text("s3cret")
    (lake / "escape").symlink_to(tmp_path / "secret")
    view = await file_repo.workspace("w").open(mounts={"data/lake": LocalDirMount(lake)})
    await view.write("notes.md", "n")
    assert [i.path for i in await view.ls()] == ["data", "notes.md"]
    assert [i.path for i in await view.ls("data")] == ["data/lake"]
    assert [i.path for i in await view.ls("data/lake")] == ["data/lake/sub"]
    assert await view.read_text("data/lake/sub/data.csv") == "a,b\n1,2\n"
    assert await view.glob("**/*.csv") == ["data/lake/sub/data.csv"]
    assert [m.path for m in await view.grep("1,2")] == ["data/lake/sub/data.csv"]
    with pytest.raises(WorkspacePathError, match="outside the mount"):
        await view.read("data/lake/escape")
    for attempt in (
        view.write("data/lake/new", "x"),
        view.delete("data/lake/sub", recursive=True),
        view.write("data", "x"),
    ):
        with pytest.raises(WorkspaceReadOnlyError, match="mount"):
            await attempt
    commit = await view.commit("mounts are not committed")
    assert list(await file_repo.workspace("w").files(commit)) == ["notes.md"]
