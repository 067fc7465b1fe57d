"""kill -9 during commits, and two processes committing to one workspace, on every backend."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from shopfloor.workspace import Workspaces, open_store

WRITER = str(Path(__file__).with_name("_writer.py"))
pytestmark = pytest.mark.slow


def _verify_every_ref(url: str, cache: Path) -> int:
    """Every commit reachable from every ref reads back with all its files hash-verified."""
    import asyncio

    async def run() -> int:
        repo = Workspaces(open_store(url), cache_dir=cache)
        checked = 0
        try:
            for name in await repo.names():
                ws = repo.workspace(name)
                for ref in await ws.refs():
                    for commit in await ws.log(ref):
                        view = await ws.checkout(commit.id)
                        for path in await view.glob("**"):
                            await view.read(path)  # raises if missing or corrupt
                        if commit.step is not None:
                            assert await view.read_text("counter.txt") == str(commit.step)
                        checked += 1
        finally:
            repo.close()
        return checked

    return asyncio.run(run())


def test_kill_9_during_commits_leaves_every_commit_intact(store_url: str, tmp_path: Path) -> None:
    rng = random.Random(7)
    total = 0
    for round_ in range(3):
        proc = subprocess.Popen(
            [sys.executable, WRITER, "loop", store_url],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert proc.stdout is not None
        try:
            for _ in range(3 + round_):  # let it commit a few times, then kill at a random moment
                line = proc.stdout.readline()
                assert line, f"writer died: {proc.stderr.read() if proc.stderr else ''}"
            time.sleep(rng.uniform(0, 0.05))
        finally:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()
            proc.stdout.close()
            if proc.stderr:
                proc.stderr.close()
        checked = _verify_every_ref(store_url, tmp_path / "cache")
        assert checked > total, "the writer made progress after restarting from the surviving head"
        total = checked


def test_two_processes_lose_no_update(store_url: str, tmp_path: Path) -> None:
    count = 12 if store_url.startswith("s3") else 20
    procs = [
        subprocess.Popen(
            [sys.executable, WRITER, "increment", store_url, who, str(count)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for who in ("alice", "bob")
    ]
    outputs = [p.communicate(timeout=240) for p in procs]
    for proc, (out, err) in zip(procs, outputs, strict=True):
        assert proc.returncode == 0, err
        assert out.startswith("conflicts ")
    import asyncio

    async def check() -> None:
        repo = Workspaces(open_store(store_url), cache_dir=tmp_path / "cache")
        try:
            view = await repo.workspace("shared").checkout()
            assert await view.read_text("counter.txt") == str(2 * count)
            assert len(await view.glob("alice/*")) == count
            assert len(await view.glob("bob/*")) == count
            assert len(await repo.workspace("shared").log()) == 2 * count
        finally:
            repo.close()

    asyncio.run(check())
