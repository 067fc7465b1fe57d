"""Workspace benchmarks: commit, materialise and storage size against a plain directory copy.

    .venv/bin/python -m benchmarks.bench_workspace [--files 10000] [--commits 100]

Every number is printed next to a baseline measured in the same run (``shutil.copytree``
of the same 10,000-file directory, i.e. what a naive snapshot per step would cost) and
the ratio. Targets from the issue: commit of one changed file < 10 ms on file://,
materialise 10,000 files < 1 s, 100 commits each changing 1% of files stored in
< 1.2x (one full copy + the changed files).

Writable materialisations copy every file (see ``_materialize.py`` for why not hard
links), from a few threads, so they cost what the kernel charges to create files, like
the baseline; read-only ones hard-link from the blob cache once it is warm. This VM's
cost to create a file with data swings about tenfold from minute to minute (30 us to
320 us), so read the ratios, not the absolute times.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import shutil
import sqlite3
import statistics
import tempfile
import time
from pathlib import Path

import sqlalchemy as sa

from shopfloor.storage import EngineReader
from shopfloor.workspace import SqlStore, Workspaces, open_store


def _content(rng: random.Random) -> bytes:
    return rng.randbytes(rng.randint(512, 4096))


def _du(root: Path) -> int:
    return sum(f.stat().st_size for f in root.rglob("*") if f.is_file())


def _row(what: str, value: float, unit: str, baseline: float, baseline_name: str) -> None:
    print(
        f"{what:<52} {value:>10.2f} {unit:<3}  baseline {baseline_name} {baseline:>9.2f} {unit:<3} "
        f" ratio {value / baseline:>7.3f}"
    )


async def _populate(repo: Workspaces, files: int, rng: random.Random) -> tuple[dict[str, bytes], str]:
    view = await repo.workspace("bench").open()
    data = {f"dir{i % 100:03d}/file{i:05d}.bin": _content(rng) for i in range(files)}
    for path, content in data.items():
        await view.write(path, content)
    return data, await view.commit("initial")


async def bench_commit(base: Path, files: int, rng: random.Random, copy_ms: float) -> None:
    for url in (
        f"file://{base / 'commit-file'}",
        f"file://{base / 'commit-fsync'}?fsync=true",
        f"sqlite:///{base / 'commit.db'}",
    ):
        repo = Workspaces(open_store(url), cache_dir=base / "cache")
        data, _ = await _populate(repo, files, rng)
        view = await repo.workspace("bench").open()
        paths = list(data)
        commit_ms, step_ms = [], []
        for _ in range(50):
            start = time.perf_counter()
            await view.write(rng.choice(paths), _content(rng))
            middle = time.perf_counter()
            await view.commit("one change")
            end = time.perf_counter()
            commit_ms.append((end - middle) * 1000)
            step_ms.append((end - start) * 1000)
        repo.close()
        label = url.split("://")[0] + ("+fsync" if "fsync" in url else "")
        _row(
            f"commit, 1 of {files} files changed ({label}), median",
            statistics.median(commit_ms),
            "ms",
            copy_ms,
            "copytree",
        )
        _row(
            f"write + commit, 1 changed ({label}), median",
            statistics.median(step_ms),
            "ms",
            copy_ms,
            "copytree",
        )


async def bench_materialise(base: Path, files: int, rng: random.Random, copy_ms: float) -> None:
    repo = Workspaces(open_store(f"file://{base / 'mat'}"), cache_dir=base / "cache")
    data, first = await _populate(repo, files, rng)
    ws = repo.workspace("bench")
    os.sync()  # the populate's dirty pages must not be written back inside the timed section
    start = time.perf_counter()
    directory = await ws.materialize(first, base / "mat-dir")
    full_ms = (time.perf_counter() - start) * 1000
    _row(f"materialise {files} files (fresh directory)", full_ms, "ms", copy_ms, "copytree")
    for state in ("cold", "warm"):
        start = time.perf_counter()
        await ws.materialize(first, base / f"mat-ro-{state}", read_only=True)
        ro_ms = (time.perf_counter() - start) * 1000
        _row(f"materialise {files} files read-only ({state} blob cache)", ro_ms, "ms", copy_ms, "copytree")
    view = await ws.open()
    for path in rng.sample(list(data), files // 100):
        await view.write(path, _content(rng))
    second = await view.commit("1% changed")
    start = time.perf_counter()
    await ws.materialize(second, directory)
    incr_ms = (time.perf_counter() - start) * 1000
    _row(f"re-materialise after 1% changed ({files // 100} files)", incr_ms, "ms", copy_ms, "copytree")
    (directory / "dir000" / "file00000.bin").write_bytes(b"changed by a skill")
    start = time.perf_counter()
    await ws.capture(directory, message="skill output")
    cap_ms = (time.perf_counter() - start) * 1000
    _row(f"capture 1 changed file of {files}", cap_ms, "ms", copy_ms, "copytree")
    repo.close()


async def bench_storage(base: Path, files: int, commits: int, rng: random.Random) -> None:
    root = base / "storage"
    repo = Workspaces(open_store(f"file://{root}"), cache_dir=base / "cache")
    data, _ = await _populate(repo, files, rng)
    full = sum(len(v) for v in data.values())
    changed = 0
    view = await repo.workspace("bench").open()
    for _ in range(commits):
        for path in rng.sample(list(data), max(1, files // 100)):
            content = _content(rng)
            changed += len(content)
            await view.write(path, content)
        await view.commit("1% changed")
    repo.close()
    stored = _du(root / "objects")
    trees = _du(root / "objects" / "trees")
    budget = full + changed
    print(
        f"{'storage of ' + str(commits) + ' commits x 1% changed':<52} {stored / 2**20:>10.2f} MiB "
        f" baseline full copy + changes {budget / 2**20:>7.2f} MiB  ratio {stored / budget:>7.3f}"
        f"  (trees {trees / 2**20:.2f} MiB; a copy per commit: {full * (commits + 1) / 2**20:.0f} MiB)"
    )


def _per_call_us(call: object, keys: list[str], rounds: int = 5) -> float:
    """The median over ``rounds`` of the mean microseconds per call of ``call(key)`` over ``keys``."""
    assert callable(call)
    samples = []
    for _ in range(rounds):
        start = time.perf_counter()
        for key in keys:
            call(key)
        samples.append((time.perf_counter() - start) / len(keys) * 1e6)
    return statistics.median(samples)


def bench_reads(base: Path, rng: random.Random, objects: int = 2000) -> None:
    """Point reads of the SQLite object store (``get``, ``exists``, a ref), side by side: raw
    ``sqlite3`` (the SQLite store before ``SqlStore``, the baseline), ``SqlStore`` reading through
    its SQLAlchemy engine (as it did before ``storage.reader``), and ``SqlStore`` as it reads now."""
    file = base / "reads.db"
    store = SqlStore(f"sqlite:///{file}")
    keys = [f"blobs/{i:064x}" for i in range(objects)]
    store.put_many((key, _content(rng)) for key in keys)
    store.set_ref("ws/bench/main", "c" * 64, expected=None)
    sample = rng.sample(keys, 500)
    raw = sqlite3.connect(file)
    engine_reads = EngineReader(store.engine)
    objects_table = sa.table("objects", sa.column("key"), sa.column("data"))
    refs_table = sa.table("refs", sa.column("name"), sa.column("value"))
    key_param, name_param = sa.bindparam("key"), sa.bindparam("name")
    get_q = sa.select(objects_table.c.data).where(objects_table.c.key == key_param)
    exists_q = sa.select(sa.literal(1)).where(objects_table.c.key == key_param)
    ref_q = sa.select(refs_table.c.value).where(refs_table.c.name == name_param)
    cases = {
        "get": (
            lambda k: raw.execute("SELECT data FROM objects WHERE key = ?", (k,)).fetchone(),
            lambda k: engine_reads.scalar(get_q, {"key": k}),
            store.get,
        ),
        "exists": (
            lambda k: raw.execute("SELECT 1 FROM objects WHERE key = ?", (k,)).fetchone(),
            lambda k: engine_reads.scalar(exists_q, {"key": k}),
            store.exists,
        ),
        "get_ref": (
            lambda _: raw.execute("SELECT value FROM refs WHERE name = ?", ("ws/bench/main",)).fetchone(),
            lambda _: engine_reads.scalar(ref_q, {"name": "ws/bench/main"}),
            lambda _: store.get_ref("ws/bench/main"),
        ),
    }
    for what, (baseline, before, now) in cases.items():
        for call in (baseline, before, now):
            _per_call_us(call, sample[:50], rounds=1)  # warm: connections, statement caches
        base_us, before_us, now_us = (_per_call_us(c, sample) for c in (baseline, before, now))
        print(
            f"{'SqlStore.' + what + ' (sqlite://), mean of 500':<40} before {before_us:>8.1f} us  "
            f"now {now_us:>8.1f} us  baseline raw sqlite3 {base_us:>6.1f} us  "
            f"ratio now {now_us / base_us:>6.2f} (before {before_us / base_us:.2f})"
        )
    raw.close()
    store.close()


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--files", type=int, default=10_000)
    parser.add_argument("--commits", type=int, default=100)
    args = parser.parse_args()
    rng = random.Random(1)
    with tempfile.TemporaryDirectory(dir=os.environ.get("BENCH_TMP")) as tmp:
        base = Path(tmp)
        source = base / "plain"
        for i in range(args.files):
            path = source / f"dir{i % 100:03d}" / f"file{i:05d}.bin"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(_content(rng))
        runs = []
        for n in range(3):
            start = time.perf_counter()
            shutil.copytree(source, base / f"copy{n}")
            runs.append((time.perf_counter() - start) * 1000)
        copy_ms = statistics.median(runs)
        print(f"baseline: shutil.copytree of {args.files} files: {copy_ms:.1f} ms (median of 3)\n")
        bench_reads(base, rng)
        await bench_commit(base, args.files, rng, copy_ms)
        await bench_materialise(base, args.files, rng, copy_ms)
        await bench_storage(base, args.files, args.commits, rng)


if __name__ == "__main__":
    asyncio.run(main())
