"""Capture is held to the workspace's quota before it reads a byte, and streams what it stores.

The attack (issue 12, finding 4): three sparse 512 MiB files in a captured directory took the
host process to 1.6 GB and committed 1.5 GiB. Each case runs in a fresh interpreter so that
its peak resident memory (``ru_maxrss``) is its own.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from shopfloor.errors import WorkspaceError, WorkspaceQuotaError
from shopfloor.workspace import Quota, Workspaces, open_store

MiB = 1 << 20

_SCRIPT = """
import json, os, resource, sys
from pathlib import Path
from shopfloor.errors import WorkspaceQuotaError
from shopfloor.workspace import Quota, Workspaces, open_store

root, quota, sizes = Path(sys.argv[1]), json.loads(sys.argv[2]), json.loads(sys.argv[3])
repo = Workspaces(open_store(f"file://{root}/store"), cache_dir=root / "cache")
ws = repo.workspace("w", quota=Quota(**quota))
def run(coro):
    import asyncio
    return asyncio.run(coro)
async def seed():
    view = await ws.open()
    await view.write("notes.md", "kept\\n")
    return await view.commit("seed")
head = run(seed())
directory = run(ws.materialize(head, root / "sandbox"))
for index, size in enumerate(sizes):
    with open(directory / f"big-{index}.bin", "wb") as handle:
        handle.truncate(size)  # sparse: no block is written
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
try:
    commit, error = run(ws.capture(directory, message="skill output")), None
except WorkspaceQuotaError as exc:
    commit, error = None, str(exc)
after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
files = run(ws.files())
print(json.dumps({
    "error": error, "commit": commit, "seed": head, "head": run(ws.head()),
    "files": {path: entry.size for path, entry in files.items()},
    "notes": run(ws.read("main", "notes.md")).decode(),
    "grew_kib": after - before,
}))
"""


def _capture(tmp_path: Path, quota: dict[str, int], sizes: list[int]) -> dict[str, Any]:
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(_SCRIPT), str(tmp_path), json.dumps(quota), json.dumps(sizes)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    value: dict[str, Any] = json.loads(result.stdout.strip().splitlines()[-1])
    return value


def test_sparse_files_over_the_quota_are_refused_before_they_are_read(tmp_path: Path) -> None:
    seen = _capture(tmp_path, {"max_bytes": 64 * MiB}, [512 * MiB] * 3)
    assert seen["error"] is not None and seen["commit"] is None
    assert "would hold 1610612741 bytes, over its limit of 67108864" in seen["error"]
    assert "largest file written: 'big-0.bin' (sparse: 0 bytes on disk), 536870912 bytes" in seen["error"]
    # Nothing of the previous commit is lost, nothing of the refused one is stored.
    assert seen["head"] == seen["seed"] and seen["files"] == {"notes.md": 5} and seen["notes"] == "kept\n"
    assert not any(p.stat().st_size > MiB for p in (tmp_path / "store").rglob("*") if p.is_file())
    assert seen["grew_kib"] < 32 * 1024, f"capture grew the process by {seen['grew_kib'] >> 10} MiB"


def test_one_file_over_the_file_limit_names_the_file_and_the_limit(tmp_path: Path) -> None:
    seen = _capture(tmp_path, {"max_file_bytes": 8 * MiB}, [MiB, 512 * MiB])
    assert seen["error"] is not None
    assert (
        "'big-1.bin' (sparse: 0 bytes on disk) is 536870912 bytes, over the file size limit of 8388608"
        in (seen["error"])
    )
    assert seen["head"] == seen["seed"]


def test_a_large_file_within_the_quota_is_captured_in_bounded_memory(tmp_path: Path) -> None:
    seen = _capture(tmp_path, {"max_bytes": 1 << 30}, [256 * MiB])
    assert seen["error"] is None and seen["head"] == seen["commit"] != seen["seed"]
    assert seen["files"] == {"notes.md": 5, "big-0.bin": 256 * MiB}
    assert seen["grew_kib"] < 32 * 1024, f"capture grew the process by {seen['grew_kib'] >> 10} MiB"


class _Source:
    """A source that gives ``good`` bytes of x, then fails or ends."""

    def __init__(self, good: int, *, fail: bool) -> None:
        self.good = good
        self.fail = fail
        self.done = 0

    def read(self, size: int = -1, /) -> bytes:
        if self.done == self.good:
            if self.fail:
                raise WorkspaceError("the file changed while it was captured")
            return b""
        chunk = min(self.good - self.done, size if size > 0 else self.good, MiB)
        self.done += chunk
        return b"x" * chunk

    def seek(self, offset: int, whence: int = 0, /) -> int:
        assert (offset, whence) == (0, 0)
        self.done = 0
        return 0

    def tell(self) -> int:
        return self.done


def test_put_file_streams_and_leaves_nothing_on_failure(store_url: str) -> None:
    store = open_store(store_url)
    try:
        size = 3 * MiB + 5
        store.put_file("blobs/" + "a" * 64, _Source(size, fail=False), size)
        assert store.get("blobs/" + "a" * 64) == b"x" * size
        for source in (
            _Source(size, fail=True),
            _Source(size - 1, fail=False),
            _Source(size + 1, fail=False),
        ):
            with pytest.raises(WorkspaceError):
                store.put_file("blobs/" + "b" * 64, source, size)
            assert not store.exists("blobs/" + "b" * 64)
    finally:
        store.close()


async def test_every_commit_path_is_held_to_the_quota(file_repo: Workspaces) -> None:
    """Not only the file tools: a commit of entries made any other way is checked in the same place."""
    ws = file_repo.workspace("w", quota=Quota(max_files=1))
    view = await ws.open()
    await view.write("one", "1")
    base = await view.commit("one")
    files = await ws.files(base)
    with pytest.raises(WorkspaceQuotaError, match="would hold 2 files, over its limit of 1"):
        await asyncio.to_thread(
            ws.commit_entries_sync,
            ref="main",
            expected_head=base,
            entries={**files, "two": files["one"]},
            changed=["two"],
            deleted=[],
        )
    assert await ws.head() == base
    # A state over a limit lowered later may still shrink: deleting is never refused.
    wider = await file_repo.workspace("w").open()
    await wider.write("two", "2")
    await wider.write("three", "3")
    await wider.commit("three files, no quota")
    narrow = await ws.open()
    await narrow.delete("three")
    assert await narrow.commit("down to two") != base
