"""A workspace writer run as a subprocess by the crash and concurrency tests.

python _writer.py loop URL             commit forever; print each committed step
python _writer.py increment URL WHO N  N times: add WHO/i.txt and bump counter.txt, retrying lost races
"""

from __future__ import annotations

import asyncio
import os
import sys
import tempfile
from pathlib import Path

from shopfloor.errors import WorkspaceConflictError
from shopfloor.workspace import Workspaces, open_store


async def loop(url: str) -> None:
    repo = Workspaces(open_store(url), cache_dir=Path(tempfile.mkdtemp()))
    ws = repo.workspace("crash")
    view = await ws.open()
    step = int((await view.read_text("counter.txt")) if await view.exists("counter.txt") else "0")
    while True:
        step += 1
        await view.write("counter.txt", str(step))
        # several files and a sizeable blob per commit, so a kill often lands mid-write
        await view.write(f"files/{step % 40}.bin", os.urandom(64 * 1024))
        await view.write(f"notes/{step % 7}.md", f"step {step}\n" * 50)
        if step % 5 == 0:
            await view.delete(f"files/{(step - 3) % 40}.bin", recursive=True)
        await view.commit(f"step {step}", step=step)
        print(step, flush=True)


async def increment(url: str, who: str, count: int) -> None:
    repo = Workspaces(open_store(url), cache_dir=Path(tempfile.mkdtemp()))
    ws = repo.workspace("shared")
    conflicts = 0
    for i in range(count):
        while True:
            view = await ws.open()
            current = int(await view.read_text("counter.txt")) if await view.exists("counter.txt") else 0
            await view.write("counter.txt", str(current + 1))
            await view.write(f"{who}/{i}.txt", f"{who} {i}")
            try:
                await view.commit(f"{who} {i}")
                break
            except WorkspaceConflictError:
                conflicts += 1
    print(f"conflicts {conflicts}", flush=True)
    repo.close()


if __name__ == "__main__":
    if sys.argv[1] == "loop":
        asyncio.run(loop(sys.argv[2]))
    else:
        asyncio.run(increment(sys.argv[2], sys.argv[3], int(sys.argv[4])))
