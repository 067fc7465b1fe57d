"""Running one command as a fresh process tree (the one-shot path) under ``supervise``."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from pathlib import Path

from shopfloor.sandbox._host import Confinement, spawn
from shopfloor.sandbox._policy import ExecResult
from shopfloor.sandbox._supervise import Watched, exit_status, feed_stdin, supervise

__all__ = ["kill_tree", "run_process"]


async def kill_tree(confinement: Confinement, process: asyncio.subprocess.Process) -> None:
    """Kill everything the command started: the whole cgroup when there is one."""
    if confinement.cgroup is not None:
        await asyncio.to_thread(confinement.cgroup.kill_all)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)


async def run_process(
    confinement: Confinement,
    argv: list[str],
    *,
    pass_fds: list[int],
    staged: list[Path] | None = None,
    stdin: bytes,
    timeout: float,  # noqa: ASYNC109 (the public interface takes a timeout)
    backend: str,
    warnings: tuple[str, ...] = (),
) -> ExecResult:
    """Start ``argv`` through the launcher, feed ``stdin``, supervise it and kill whatever it leaves."""
    cgroup = confinement.cgroup
    before = await asyncio.to_thread(cgroup.stats) if cgroup is not None else None
    process = await spawn(confinement, argv, pass_fds=pass_fds, staged=staged)
    assert process.stdin is not None and process.stdout is not None and process.stderr is not None
    stdin_task = asyncio.ensure_future(feed_stdin(process.stdin, stdin))

    async def wait() -> tuple[int, float, int]:
        return exit_status(await process.wait()), 0.0, 0

    async def kill() -> None:
        await kill_tree(confinement, process)

    try:
        return await supervise(
            Watched(
                stdout=process.stdout, stderr=process.stderr, wait=wait(), kill=kill, stdin_task=stdin_task
            ),
            timeout=timeout,
            max_output=confinement.policy.max_output,
            cgroup=cgroup,
            backend=backend,
            warnings=warnings,
            before=before,
        )
    finally:
        if process.returncode is None:
            await kill()
            await process.wait()
