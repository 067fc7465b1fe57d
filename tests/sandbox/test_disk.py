"""The bounded writable area: what a sandbox does to it reaches the workspace, and nothing else does."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from shopfloor.sandbox._disk import RUNTIME_PREFIX, mount_writable_area, sweep_writable_areas

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="mounting the area needs root")


def test_changes_are_applied_to_the_workspace(tmp_path: Path) -> None:
    workspace, outside = tmp_path / "ws", tmp_path / "outside"
    workspace.mkdir()
    outside.mkdir()
    (workspace / "keep.txt").write_text("keep")
    (workspace / "gone.txt").write_text("gone")
    (workspace / "edit.txt").write_text("old")
    (workspace / "replaced").mkdir()
    (workspace / "replaced" / "old.txt").write_text("old")
    (workspace / "link").symlink_to(outside)  # planted earlier, pointing out of the workspace
    runtime = tmp_path / "runtime"
    runtime.mkdir()
    area = mount_writable_area(runtime, workspace, size=1 << 20, files=64, uid=0, gid=0)
    try:
        view = area.merged
        (view / "gone.txt").unlink()
        (view / "edit.txt").write_text("new")
        (view / "new" / "deep").mkdir(parents=True)
        (view / "new" / "deep" / "f.txt").write_text("f")
        for child in (view / "replaced").iterdir():
            child.unlink()
        (view / "replaced").rmdir()
        (view / "replaced").mkdir()  # an opaque directory in the upper layer
        (view / "replaced" / "fresh.txt").write_text("fresh")
        (view / "link").unlink()
        (view / "link").mkdir()
        (view / "link" / "planted.txt").write_text("must stay in the workspace")
        (view / "alias").symlink_to("keep.txt")
        with pytest.raises(OSError) as full:
            (view / "big").write_bytes(b"x" * (2 << 20))
        assert full.value.errno == 28  # ENOSPC: the area holds 1 MiB
        # Nothing reaches the workspace until the area is released.
        assert (workspace / "gone.txt").exists() and (workspace / "edit.txt").read_text() == "old"
    finally:
        area.release()
    assert (workspace / "keep.txt").read_text() == "keep"
    assert not (workspace / "gone.txt").exists()
    assert (workspace / "edit.txt").read_text() == "new"
    assert (workspace / "new" / "deep" / "f.txt").read_text() == "f"
    assert sorted(p.name for p in (workspace / "replaced").iterdir()) == ["fresh.txt"]
    assert not (workspace / "link").is_symlink() and (workspace / "link" / "planted.txt").is_file()
    assert list(outside.iterdir()) == []
    assert os.readlink(workspace / "alias") == "keep.txt"
    assert (workspace / "big").stat().st_size <= 1 << 20
    assert not os.path.ismount(runtime / "disk") and not os.path.ismount(area.merged)


def test_areas_a_crashed_host_left_are_swept(tmp_path: Path) -> None:
    workspace = tmp_path / "ws"
    workspace.mkdir()
    dead = next(pid for pid in range(4_000_000, 4_100_000) if not os.path.exists(f"/proc/{pid}"))
    crashed = tmp_path / f"{RUNTIME_PREFIX}{dead}-abc"
    live = tmp_path / f"{RUNTIME_PREFIX}{os.getpid()}-def"
    areas = []
    for runtime in (crashed, live):
        runtime.mkdir()
        areas.append(mount_writable_area(runtime, workspace, size=1 << 20, files=64, uid=0, gid=0))
    try:
        (areas[0].merged / "lost.txt").write_text("the crashed run's")
        swept = sweep_writable_areas(tmp_path)
        assert sorted(swept) == [crashed / "disk", crashed / "workspace"]
        assert not crashed.exists() and not (workspace / "lost.txt").exists()
        assert os.path.ismount(live / "disk") and os.path.ismount(live / "workspace")
    finally:
        areas[1].release()
