"""materialize/capture: round trips, O(changed) behaviour, and what capture refuses."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from shopfloor.config import Settings
from shopfloor.errors import WorkspaceError, WorkspacePathError, WorkspaceQuotaError, WorkspaceReadOnlyError
from shopfloor.telemetry import configure_telemetry
from shopfloor.workspace import Quota, Workspaces


async def _seed(repo: Workspaces) -> str:
    view = await repo.workspace("w").open()
    await view.write("a.txt", "alpha\n")
    await view.write("src/main.py", "print('hi')\n")
    await view.write("bin/tool", "#!/bin/sh\necho hi\n", executable=True)
    await view.mkdir("out")
    return await view.commit("seed")


def _tree(root: Path) -> dict[str, bytes | None]:
    found: dict[str, bytes | None] = {}
    for path in sorted(root.rglob("*")):
        rel = str(path.relative_to(root))
        found[rel] = path.read_bytes() if path.is_file() else None
    return found


async def test_round_trip(repo: Workspaces, tmp_path: Path) -> None:
    ws = repo.workspace("w")
    seed = await _seed(repo)
    directory = await ws.materialize(seed, tmp_path / "m")
    assert _tree(directory) == {
        "a.txt": b"alpha\n",
        "bin": None,
        "bin/tool": b"#!/bin/sh\necho hi\n",
        "out": None,
        "src": None,
        "src/main.py": b"print('hi')\n",
    }
    assert os.access(directory / "bin/tool", os.X_OK) and not os.access(directory / "a.txt", os.X_OK)
    (directory / "a.txt").write_text("changed\n")
    (directory / "src/main.py").unlink()
    (directory / "out/report.md").write_text("# report\n")
    (directory / "new").mkdir()
    captured = await ws.capture(directory, message="sandbox step", run_id="r1", step=2)
    assert (await ws.commit_info(captured)).parents == (seed,)
    changes = {c.path: c.status for c in await ws.diff(seed, captured)}
    assert changes == {
        "a.txt": "changed",
        "src/main.py": "deleted",
        "out/report.md": "added",
        "out": "deleted",
        "src": "added",  # emptied on disk: kept as an empty directory
        "new": "added",
    }
    view = await ws.checkout(captured)
    assert await view.read("out/report.md") == b"# report\n"
    assert (await view.stat("new")).kind == "dir"
    # nothing changed: no new commit
    assert await ws.capture(directory) == captured


async def test_rematerialise_rewrites_only_changed_files(file_repo: Workspaces, tmp_path: Path) -> None:
    ws = file_repo.workspace("w")
    view = await ws.open()
    for i in range(50):
        await view.write(f"d{i % 5}/f{i}.txt", f"v0 {i}")
    first = await view.commit("first")
    await view.write("d0/f0.txt", "v1")
    await view.delete("d1/f1.txt")
    second = await view.commit("second")
    directory = await ws.materialize(first, tmp_path / "m")
    inodes = {p: (p.stat().st_ino, p.stat().st_mtime_ns) for p in directory.rglob("*.txt")}
    (directory / "stray.tmp").write_text("left by a program")
    await ws.materialize(second, directory)
    after = {p: (p.stat().st_ino, p.stat().st_mtime_ns) for p in directory.rglob("*.txt")}
    rewritten = {str(p.relative_to(directory)) for p in after if inodes.get(p) != after[p]}
    assert rewritten == {"d0/f0.txt"}
    assert not (directory / "d1/f1.txt").exists() and not (directory / "stray.tmp").exists()
    assert (directory / "d0/f0.txt").read_text() == "v1"
    # a file edited in place in the directory is noticed by stat and put back
    (directory / "d2/f2.txt").write_text("tampered")
    await ws.materialize(second, directory)
    assert (directory / "d2/f2.txt").read_text() == "v0 2"


@pytest.mark.parametrize("read_only", [False, True])
async def test_a_directory_becomes_a_file_and_back_in_the_same_place(
    file_repo: Workspaces, tmp_path: Path, read_only: bool
) -> None:
    """A path that was a directory in the materialised commit and is a file in the next (and back): the
    directory emptied of its files is removed before the file is placed where it was."""
    ws = file_repo.workspace("w")
    view = await ws.open()
    await view.write("a/b", "inside")
    as_directory = await view.commit("a is a directory")
    await view.delete("a", recursive=True)
    await view.write("a", "now a file")
    as_file = await view.commit("a is a file")
    directory = await ws.materialize(as_directory, tmp_path / "m", read_only=read_only)
    await ws.materialize(as_file, directory, read_only=read_only)
    assert _tree(directory) == {"a": b"now a file"}
    await ws.materialize(as_directory, directory, read_only=read_only)
    assert _tree(directory) == {"a": None, "a/b": b"inside"}


async def test_refuses_foreign_non_empty_directory(file_repo: Workspaces, tmp_path: Path) -> None:
    seed = await _seed(file_repo)
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "mine.txt").write_text("keep me")
    with pytest.raises(WorkspaceError, match="not empty"):
        await file_repo.workspace("w").materialize(seed, tmp_path / "busy")
    assert (tmp_path / "busy" / "mine.txt").read_text() == "keep me"


async def test_read_only_materialisation_does_not_expose_the_store(
    file_repo: Workspaces, tmp_path: Path
) -> None:
    ws = file_repo.workspace("w")
    seed = await _seed(file_repo)
    directory = await ws.materialize(seed, tmp_path / "ro", read_only=True)
    linked = directory / "a.txt"
    assert linked.read_text() == "alpha\n"
    assert linked.stat().st_nlink >= 2 and not linked.stat().st_mode & 0o222
    store_file = file_repo.store.local_path(f"blobs/{(await ws.files())['a.txt'].blob}")
    assert store_file is not None and store_file.stat().st_ino != linked.stat().st_ino
    with pytest.raises(WorkspaceReadOnlyError):
        await ws.capture(directory)
    # switching the same directory back to a writable materialisation works
    writable = await ws.materialize(seed, directory)
    (writable / "a.txt").write_text("edited")
    assert (await (await ws.checkout()).read("a.txt")) == b"alpha\n"


async def test_capture_refuses_links_out_of_the_workspace(file_repo: Workspaces, tmp_path: Path) -> None:
    ws = file_repo.workspace("w")
    seed = await _seed(file_repo)
    outside = tmp_path / "secret.txt"
    outside.write_text("secret")
    directory = await ws.materialize(seed, tmp_path / "m")
    (directory / "leak").symlink_to(outside)
    with pytest.raises(WorkspacePathError, match=r"symbolic link to .*outside"):
        await ws.capture(directory)
    (directory / "leak").unlink()
    (directory / "dirlink").symlink_to(directory / "src")
    with pytest.raises(WorkspacePathError, match="symbolic link to a directory"):
        await ws.capture(directory)
    (directory / "dirlink").unlink()
    os.link(outside, directory / "hard")
    with pytest.raises(WorkspacePathError, match="hard link to a file outside"):
        await ws.capture(directory)
    (directory / "hard").unlink()
    os.mkfifo(directory / "pipe")
    with pytest.raises(WorkspacePathError, match="not a regular file"):
        await ws.capture(directory)
    (directory / "pipe").unlink()
    # links that stay inside are fine: a symlink is captured as a copy, a hard link pair as two files
    (directory / "alias.txt").symlink_to(directory / "a.txt")
    os.link(directory / "src/main.py", directory / "copy.py")
    commit = await ws.capture(directory)
    view = await ws.checkout(commit)
    assert await view.read("alias.txt") == b"alpha\n"
    assert await view.read("copy.py") == b"print('hi')\n"
    assert await ws.head() == commit


async def test_capture_refuses_bad_names_and_quota(file_repo: Workspaces, tmp_path: Path) -> None:
    ws = file_repo.workspace("w")
    seed = await _seed(file_repo)
    directory = await ws.materialize(seed, tmp_path / "m")
    bad = Path(os.fsdecode(os.path.join(os.fsencode(directory), b"caf\xe9.txt")))
    bad.write_bytes(b"latin-1 name")  # noqa: ASYNC240  (a test may block)
    with pytest.raises(WorkspacePathError, match="not valid UTF-8"):
        await ws.capture(directory)
    os.unlink(bad)
    (directory / "big.bin").write_bytes(b"x" * 1000)
    too_big = r"'big\.bin' is 1000 bytes, over the file size limit of 100"
    with pytest.raises(WorkspaceQuotaError, match=too_big):
        await file_repo.workspace("w", quota=Quota(max_file_bytes=100)).capture(directory)
    with pytest.raises(WorkspaceQuotaError, match="would hold 4 files, over its limit of 3"):
        await file_repo.workspace("w", quota=Quota(max_files=3)).capture(directory)
    assert await ws.head() == seed  # nothing was committed


async def test_in_place_write_through_a_hard_link_does_not_spread(
    file_repo: Workspaces, tmp_path: Path
) -> None:
    ws = file_repo.workspace("w")
    view = await ws.open()
    await view.write("data.txt", "same bytes")
    await view.write("run.sh", "same bytes", executable=True)  # one blob, linked once and copied once
    commit = await view.commit("c")
    first = await ws.materialize(commit, tmp_path / "one", read_only=True)
    blob = (await ws.files())["data.txt"].blob
    store_file = file_repo.store.local_path(f"blobs/{blob}")
    assert store_file is not None and store_file.stat().st_nlink == 1  # the store is never linked
    # what a root process ignoring the read-only bind could do: write into the shared inode
    (first / "data.txt").chmod(0o644)
    (first / "data.txt").write_text("corrupted")
    second = await ws.materialize(commit, tmp_path / "two", read_only=True)
    assert (second / "data.txt").read_text() == "same bytes"
    assert (second / "run.sh").read_text() == "same bytes"
    assert await (await ws.checkout()).read("data.txt") == b"same bytes"


async def test_same_size_rewrite_is_captured(file_repo: Workspaces, tmp_path: Path) -> None:
    ws = file_repo.workspace("w")
    seed = await _seed(file_repo)
    directory = await ws.materialize(seed, tmp_path / "m")
    (directory / "a.txt").write_text("ALPHA\n")  # same size, written right after materialising
    captured = await ws.capture(directory)
    assert captured != seed
    assert await (await ws.checkout(captured)).read("a.txt") == b"ALPHA\n"


async def test_records_of_deleted_directories_are_released(file_repo: Workspaces, tmp_path: Path) -> None:
    import shutil

    ws = file_repo.workspace("w")
    seed = await _seed(file_repo)
    records = file_repo.cache_dir / "materialized"
    one = await ws.materialize(seed, tmp_path / "one")
    two = await ws.materialize(seed, tmp_path / "two")
    assert len(list(records.glob("*.json"))) == 2
    shutil.rmtree(one)
    assert await ws.release(one) and not await ws.release(one)
    shutil.rmtree(two)
    assert (await file_repo.gc()).leftovers == 1
    assert list(records.glob("*.json")) == []


async def test_a_view_capture_is_a_traced_commit_within_the_quota(
    repo: Workspaces, tmp_path: Path, settings: Settings
) -> None:
    telemetry = configure_telemetry(settings)
    exported = InMemorySpanExporter()
    telemetry.add_span_processor(SimpleSpanProcessor(exported))
    try:
        view = await repo.workspace("w", quota=Quota(max_files=3)).open()
        await view.write("a.txt", "alpha\n")
        seed = await view.commit("seed")
        directory = await view.workspace.materialize(seed, tmp_path / "m")
        (directory / "b.txt").write_text("beta\n")
        await view.write("pending.txt", "mine")  # an uncommitted change of the view stays on top
        commit = await view.capture(directory, message="skill x", run_id="r1", step=4)
        assert view.base == commit == await view.workspace.head()
        assert await view.read("pending.txt") == b"mine" and view.dirty
        assert (await view.workspace.commit_info(commit)).step == 4
        (directory / "c.txt").write_text("c")
        (directory / "d.txt").write_text("d")
        with pytest.raises(WorkspaceQuotaError, match="files, over its limit of 3"):
            await view.capture(directory, message="too many")
    finally:
        telemetry.shutdown()
    spans = [s for s in exported.get_finished_spans() if s.name == "workspace.commit"]
    attributes = [dict(s.attributes or {}) for s in spans]
    assert [a["shopfloor.workspace.source"] for a in attributes] == ["view", "capture", "capture"]
    assert attributes[1]["shopfloor.workspace.commit"] == commit
