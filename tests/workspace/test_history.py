"""log, diff, restore, refs, addresses, pins, retention and gc."""

from __future__ import annotations

import pytest

from shopfloor.errors import WorkspaceConflictError, WorkspaceNotFoundError, WorkspacePathError
from shopfloor.workspace import Retention, Workspaces, parse_address


async def _history(repo: Workspaces, count: int) -> list[str]:
    view = await repo.workspace("w").open()
    commits = []
    for i in range(count):
        await view.write("counter.txt", f"{i}\n")
        await view.write(f"files/{i}.txt", f"file {i}\n")
        commits.append(await view.commit(f"step {i}", step=i))
    return commits


async def test_log_diff_and_text_diff(file_repo: Workspaces) -> None:
    ws = file_repo.workspace("w")
    assert await ws.log() == []
    c0, c1, c2 = await _history(file_repo, 3)
    assert [c.message for c in await ws.log()] == ["step 2", "step 1", "step 0"]
    assert [c.id for c in await ws.log(limit=2)] == [c2, c1]
    assert (await ws.commit_info(c2)).parents == (c1,)
    changes = await ws.diff(c0, c2)
    assert [(c.path, c.status) for c in changes] == [
        ("counter.txt", "changed"),
        ("files/1.txt", "added"),
        ("files/2.txt", "added"),
    ]
    view = await ws.open()
    await view.delete("files/0.txt")
    c3 = await view.commit("delete")
    assert [(c.path, c.status) for c in await ws.diff(c2, c3)] == [("files/0.txt", "deleted")]
    patch = await ws.text_diff(c0, c1)
    assert "-0\n+1\n" in patch and "+++ b/files/1.txt" in patch


async def test_resolve_refs_prefixes_and_parents(file_repo: Workspaces) -> None:
    ws = file_repo.workspace("w")
    c0, c1, c2 = await _history(file_repo, 3)
    assert await ws.resolve("main") == c2
    assert await ws.resolve(c1[:10]) == c1
    assert await ws.resolve("main~2") == c0
    with pytest.raises(WorkspaceNotFoundError):
        await ws.resolve("main~5")
    with pytest.raises(WorkspaceNotFoundError):
        await ws.resolve("nosuchref")
    assert await ws.set_ref("experiment", c0, create=True) == c0
    with pytest.raises(WorkspaceConflictError):
        await ws.set_ref("experiment", c1, create=True)
    with pytest.raises(WorkspaceConflictError):
        await ws.set_ref("experiment", c1, expected=c2)
    branch = await ws.open("experiment")
    assert await branch.read("counter.txt") == b"0\n"
    await branch.write("idea.md", "x")
    on_branch = await branch.commit("idea")
    assert await ws.refs() == {"main": c2, "experiment": on_branch}
    assert await ws.head() == c2
    await ws.delete_ref("experiment")
    assert list(await ws.refs()) == ["main"]


async def test_names_and_revisions_ending_in_a_newline_are_refused(file_repo: Workspaces) -> None:
    """Python's ``$`` matches before a final newline; names and revisions end at the end of the text."""
    with pytest.raises(WorkspacePathError, match=r"^workspace name 'w\\n' is invalid"):
        file_repo.workspace("w\n")
    ws = file_repo.workspace("w")
    c0, c1, _c2 = await _history(file_repo, 3)
    with pytest.raises(WorkspacePathError, match=r"^ref name 'experiment\\n' is invalid"):
        await ws.set_ref("experiment\n", c0, create=True)
    assert await ws.set_ref("experiment", c0, create=True) == c0
    assert sorted(await ws.refs()) == ["experiment", "main"]
    for rev in ("main\n", "experiment\n", "main~1\n", f"{c1}\n", f"{c1[:10]}\n"):
        with pytest.raises(WorkspaceNotFoundError, match="has no ref or commit"):
            await ws.resolve(rev)
    assert [await ws.resolve(rev) for rev in ("experiment", "main~1", c1, c1[:10])] == [c0, c1, c1, c1]


async def test_restore_is_a_new_commit_with_old_content(file_repo: Workspaces) -> None:
    ws = file_repo.workspace("w")
    c0, _c1, c2 = await _history(file_repo, 3)
    restored = await ws.restore(c0, identity="bob")
    info = await ws.commit_info(restored)
    assert info.parents == (c2,) and info.extra == {"restored_from": c0} and info.identity == "bob"
    assert await ws.diff(c0, restored) == []
    assert len(await ws.log()) == 4
    assert await ws.read("main", "counter.txt") == b"0\n"


def test_addresses() -> None:
    a = parse_address("ws://proj@abc123/notes/a.md")
    assert (a.workspace, a.rev, a.path) == ("proj", "abc123", "notes/a.md")
    b = parse_address("proj:notes/a.md")
    assert (b.workspace, b.rev, b.path) == ("proj", "main", "notes/a.md")
    assert parse_address("proj@dev:x").rev == "dev"
    for bad in ("noseparator", "ws://../x", "proj:../x", "bad name:x", "proj\n:x", "ws://proj\n@abc/x"):
        with pytest.raises(WorkspacePathError):
            parse_address(bad)


async def test_retention_keep_last_pins_and_gc(file_repo: Workspaces) -> None:
    ws = file_repo.workspace("w")
    commits = await _history(file_repo, 8)
    await ws.pin(commits[1], reason="release 1.0")
    assert await ws.pins() == {commits[1]: "release 1.0"}
    await ws.set_retention(Retention(keep_last=3))
    assert await ws.retention() == Retention(keep_last=3)
    report = await file_repo.gc(grace=0)
    assert report.kept_commits == 4 and report.deleted_commits == 4
    assert report.deleted_blobs > 0
    assert [c.id for c in await ws.log()] == commits[:4:-1]  # history ends where retention cut it
    pinned = await ws.checkout(commits[1])
    assert await pinned.read("files/1.txt") == b"file 1\n"
    for kept in commits[5:]:
        view = await ws.checkout(kept)
        for path in await view.glob("**"):
            await view.read(path)  # every blob of a kept commit is still there (and verifies)
    with pytest.raises(WorkspaceNotFoundError):
        await ws.checkout(commits[3])
    await ws.unpin(commits[1])
    second = await file_repo.gc(grace=0)
    assert second.deleted_commits == 1
    again = await file_repo.gc(grace=0)
    assert (again.deleted_commits, again.deleted_blobs, again.deleted_trees) == (0, 0, 0)


async def test_retention_by_age_and_grace(file_repo: Workspaces) -> None:
    import time

    ws = file_repo.workspace("w")
    commits = await _history(file_repo, 3)
    await ws.set_retention(Retention(keep_days=1))
    # everything is younger than a day: nothing goes
    assert (await file_repo.gc(grace=0)).deleted_commits == 0
    # two days from now, only the head survives (a ref's head always does)
    report = await file_repo.gc(grace=0, now=time.time() + 2 * 86400)
    assert report.kept_commits == 1 and report.deleted_commits == 2
    assert [c.id for c in await ws.log()] == commits[2:]


async def test_gc_spares_young_unreferenced_objects(file_repo: Workspaces) -> None:
    ws = file_repo.workspace("w")
    await _history(file_repo, 1)
    view = await ws.open()
    info = await view.write("pending.txt", "not committed yet")
    report = await file_repo.gc()  # default grace: an hour
    assert report.deleted_blobs == 0
    assert file_repo.store.exists(f"blobs/{info.blob}")
    await view.commit("now committed")
    assert await (await ws.checkout()).read("pending.txt") == b"not committed yet"


async def test_lost_race_conflicts_and_rebase(repo: Workspaces) -> None:
    ws = repo.workspace("race")
    base = await ws.open()
    await base.write("shared.txt", "v0")
    await base.commit("base")
    first, second = await ws.open(), await ws.open()
    await first.write("a.txt", "from first")
    await second.write("b.txt", "from second")
    winner = await first.commit("first")
    with pytest.raises(WorkspaceConflictError, match="moved"):
        await second.commit("second")
    merged = await second.commit("second", retries=1)  # rebases: different paths
    assert (await ws.commit_info(merged)).parents == (winner,)
    files = await ws.files()
    assert sorted(files) == ["a.txt", "b.txt", "shared.txt"]
    # both change the same file: no silent overwrite, the loser must redo its change
    one, two = await ws.open(), await ws.open()
    await one.write("shared.txt", "one")
    await two.write("shared.txt", "two")
    await one.commit("one")
    with pytest.raises(WorkspaceConflictError, match=r"shared\.txt changed both"):
        await two.commit("two", retries=3)
    assert await (await ws.checkout()).read("shared.txt") == b"one"
