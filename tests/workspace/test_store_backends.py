"""The ObjectStore contract, the same on every backend."""

from __future__ import annotations

from pathlib import Path

import pytest

from shopfloor.errors import ConfigError, WorkspaceConflictError, WorkspaceNotFoundError
from shopfloor.workspace import Workspaces, open_store, store_backends, store_schemes
from shopfloor.workspace._file import FileStore


def test_objects_put_get_list_delete(store_url: str) -> None:
    with open_store(store_url) as store:
        store.put("blobs/aa11", b"one")
        store.put("blobs/aa11", b"one")  # idempotent
        store.put_many([("blobs/bb22", b"two"), ("trees/cc33", b"three")])
        assert store.get("blobs/aa11") == b"one"
        assert store.exists("trees/cc33") and not store.exists("trees/dd44")
        assert sorted(o.key for o in store.list("blobs/")) == ["blobs/aa11", "blobs/bb22"]
        assert [o.key for o in store.list("blobs/aa")] == ["blobs/aa11"]
        assert {o.key: o.size for o in store.list("trees/")} == {"trees/cc33": 5}
        assert store.delete(["blobs/aa11", "blobs/zz99"]) >= 1
        with pytest.raises(WorkspaceNotFoundError):
            store.get("blobs/aa11")


def test_ref_compare_and_swap(store_url: str) -> None:
    with open_store(store_url) as store:
        assert store.get_ref("ws/w/heads/main") is None
        first = store.set_ref("ws/w/heads/main", "c1", expected=None)
        with pytest.raises(WorkspaceConflictError):
            store.set_ref("ws/w/heads/main", "c1b", expected=None)  # creating it again loses
        second = store.set_ref("ws/w/heads/main", "c2", expected=first)
        with pytest.raises(WorkspaceConflictError):
            store.set_ref("ws/w/heads/main", "c3", expected=first)  # stale token loses
        current = store.get_ref("ws/w/heads/main")
        assert current is not None and current.value == "c2" and current.token == second.token
        store.set_ref("ws/w/heads/dev", "c9", expected=None)
        assert store.list_refs("ws/w/") == {"ws/w/heads/main": "c2", "ws/w/heads/dev": "c9"}
        store.delete_ref("ws/w/heads/dev")
        assert store.list_refs("ws/w/heads/d") == {}


async def test_commit_and_read_back(repo: Workspaces) -> None:
    ws = repo.workspace("proj")
    view = await ws.open()
    await view.write("a.txt", "alpha")
    await view.write("dir/b.bin", bytes(range(256)))
    first = await view.commit("first", run_id="run-1", step=3, identity="alice")
    await view.write("a.txt", "beta")
    second = await view.commit("second")
    assert await ws.head() == second
    info = await ws.commit_info(first)
    assert (info.run_id, info.step, info.identity, info.message) == ("run-1", 3, "alice", "first")
    fresh = Workspaces(open_store(repo.store.url), cache_dir=repo.cache_dir)  # no caches
    try:
        old = await fresh.workspace("proj").checkout(first)
        assert await old.read("a.txt") == b"alpha"
        assert await old.read("dir/b.bin") == bytes(range(256))
        assert await (await fresh.workspace("proj").checkout()).read("a.txt") == b"beta"
        assert await fresh.names() == ["proj"]
    finally:
        fresh.close()


def test_unknown_scheme_and_bad_urls(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="unknown scheme 'ftp'"):
        open_store("ftp://x/y")
    with pytest.raises(ConfigError, match="three slashes"):
        open_store("file://relative/path")
    with pytest.raises(ConfigError, match="fsync"):
        open_store(f"file://{tmp_path}?fsync=maybe")
    with pytest.raises(ConfigError, match="names no bucket"):
        open_store("s3:///prefix")


def test_a_registry_of_ones_own_adds_a_scheme(tmp_path: Path) -> None:
    backends = store_backends()
    backends.register("localdisk", FileStore)
    store = open_store(f"localdisk://{tmp_path}", backends)
    assert isinstance(store, FileStore)
    # Only that registry has it: the process's default stores do not.
    assert "localdisk" not in store_schemes()
    with pytest.raises(ConfigError, match="unknown scheme 'localdisk'"):
        open_store(f"localdisk://{tmp_path}")


async def test_corrupt_object_is_detected(tmp_path: Path) -> None:
    repo = Workspaces(open_store(f"file://{tmp_path / 's'}"), cache_dir=tmp_path / "c")
    view = await repo.workspace("w").open()
    info = await view.write("a", "data")
    await view.commit("c")
    path = tmp_path / "s" / "objects" / "blobs" / info.blob[:2] / info.blob[2:]  # type: ignore[index]
    path.chmod(0o644)
    path.write_bytes(b"tampered")
    with pytest.raises(Exception, match="corrupt"):
        await (await repo.workspace("w").checkout()).read("a")
    repo.close()
