"""Property: random operations, commits, checkouts and restores keep every commit's content exactly."""

from __future__ import annotations

import asyncio
import shutil
import uuid
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shopfloor.errors import WorkspaceError
from shopfloor.workspace import Workspaces, open_store

_NAMES = st.sampled_from(["a", "b", "x.txt", "y.md"])
_PATHS = st.lists(_NAMES, min_size=1, max_size=3).map("/".join)
_OPS = st.one_of(
    st.tuples(st.just("write"), _PATHS, st.binary(max_size=24)),
    st.tuples(st.just("delete"), _PATHS),
    st.tuples(st.just("move"), _PATHS, _PATHS),
    st.tuples(st.just("mkdir"), _PATHS),
    st.tuples(st.just("commit")),
    st.tuples(st.just("checkout"), st.integers(min_value=0, max_value=50)),
    st.tuples(st.just("restore"), st.integers(min_value=0, max_value=50)),
    st.tuples(st.just("sandbox"), _PATHS, st.one_of(st.none(), st.binary(max_size=24))),
)
_EXAMPLES = {"file": 30, "sqlite": 30, "s3": 8}


async def _files(view: Any) -> dict[str, bytes]:
    return {p: await view.read(p) for p in await view.glob("**")}


def _on_disk(directory: Path, path: str, content: bytes | None) -> bool:
    """What a sandboxed program might do: write or delete one path. False if the file system refused."""
    target = directory / path
    try:
        if content is None:
            if target.is_dir():
                shutil.rmtree(target)
            else:
                target.unlink()
        else:
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(content)
    except OSError:
        return False
    return True


async def _scenario(url: str, cache: Path, ops: list[tuple[Any, ...]]) -> None:
    repo = Workspaces(open_store(url), cache_dir=cache)
    ws = repo.workspace("prop")
    view = await ws.open()
    model: dict[str, bytes] = {}
    snapshots: dict[str, dict[str, bytes]] = {}
    order: list[str] = []
    sandbox = cache.parent / f"sandbox-{uuid.uuid4().hex}"
    try:
        for op in ops:
            kind = op[0]
            if kind == "write":
                try:
                    await view.write(op[1], op[2])
                except WorkspaceError:
                    continue
                model[op[1]] = op[2]
            elif kind == "delete":
                try:
                    await view.delete(op[1], recursive=True)
                except WorkspaceError:
                    continue
                for path in [p for p in model if p == op[1] or p.startswith(op[1] + "/")]:
                    del model[path]
            elif kind == "move":
                try:
                    new = await view.move(op[1], op[2])
                except WorkspaceError:
                    continue
                for path in [p for p in model if p == op[1] or p.startswith(op[1] + "/")]:
                    model[new + path[len(op[1]) :]] = model.pop(path)
            elif kind == "mkdir":
                try:
                    await view.mkdir(op[1])
                except WorkspaceError:
                    continue
            elif kind == "commit":
                commit = await view.commit(f"commit {len(order)}")
                snapshots[commit] = dict(model)
                order.append(commit)
            elif kind == "checkout" and order:
                commit = order[op[1] % len(order)]
                assert await _files(await ws.checkout(commit)) == snapshots[commit]
            elif kind == "restore" and order:
                commit = order[op[1] % len(order)]
                await view.commit("before restore")  # keep pending work in history
                restored = await ws.restore(commit)
                model = dict(snapshots[commit])
                snapshots[restored] = dict(model)
                order.append(restored)
                view = await ws.open()
            elif kind == "sandbox":
                # materialise the head (into the same directory each time), change it, capture it back
                head = await view.commit("before sandbox")
                await ws.materialize(head, sandbox)
                if _on_disk(sandbox, op[1], op[2]):
                    if op[2] is None:
                        for path in [p for p in model if p == op[1] or p.startswith(op[1] + "/")]:
                            del model[path]
                    else:
                        model[op[1]] = op[2]
                captured = await ws.capture(sandbox, message="sandbox")
                snapshots[captured] = dict(model)
                order.append(captured)
                view = await ws.open()
            assert view.file_count == len(model)
            assert view.total_bytes == sum(len(v) for v in model.values())
        final = await view.commit("final")
        snapshots[final] = dict(model)
    finally:
        repo.close()
    # Read everything back through a fresh handle: no caches, every tree rebuilt from storage.
    fresh = Workspaces(open_store(url), cache_dir=cache)
    try:
        for commit, expected in snapshots.items():
            assert await _files(await fresh.workspace("prop").checkout(commit)) == expected
    finally:
        fresh.close()


@pytest.mark.parametrize("backend", ["file", "sqlite", pytest.param("s3", marks=pytest.mark.slow)])
def test_random_histories_read_back_exactly(
    backend: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    weed = request.getfixturevalue("s3_weed") if backend == "s3" else None

    def url() -> str:
        name = uuid.uuid4().hex
        if backend == "file":
            return f"file://{tmp_path / name}"
        if backend == "sqlite":
            return f"sqlite:///{tmp_path / name}.db"
        assert weed is not None
        return f"s3://{weed.bucket}/{name}?endpoint_url={weed.endpoint}"

    @settings(
        max_examples=_EXAMPLES[backend],
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    )
    @given(ops=st.lists(_OPS, max_size=30))
    def run(ops: list[tuple[Any, ...]]) -> None:
        asyncio.run(_scenario(url(), tmp_path / "cache", ops))

    run()
