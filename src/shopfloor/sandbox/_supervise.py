"""Watching one command: capped output, the wall-clock bound, the pids and memory limits.

Every backend runs its commands through ``supervise``; they differ only in how they start a command,
wait for it and kill it.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from shopfloor.sandbox._cgroup import Cgroup, CgroupStats
from shopfloor.sandbox._policy import ExecResult, KilledBy

__all__ = ["Watched", "exit_status", "feed_stdin", "supervise"]

_POLL = 0.05
_CHUNK = 65536


@dataclass(kw_only=True)
class Watched:
    """The live parts of one started command."""

    stdout: asyncio.StreamReader
    stderr: asyncio.StreamReader
    wait: Awaitable[tuple[int, float, int]]  # exit status (shell convention), cpu seconds, peak bytes
    kill: Callable[[], Awaitable[None]]
    stdin_task: asyncio.Task[None] | None = None


async def feed_stdin(writer: asyncio.StreamWriter, data: bytes) -> None:
    """Write ``data`` and close; a command that exits without reading its input is not an error."""
    try:
        if data:
            writer.write(data)
            await writer.drain()
        writer.close()
        await writer.wait_closed()
    except (BrokenPipeError, ConnectionResetError):
        return


def exit_status(returncode: int) -> int:
    """Shell convention: 128 + signal for a command killed by a signal."""
    return 128 - returncode if returncode < 0 else returncode


class _Capped:
    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.data = bytearray()
        self.truncated = False

    async def drain(self, reader: asyncio.StreamReader, overflow: asyncio.Event) -> None:
        # Past the cap, keep reading and discarding: a pipe nobody reads never reports EOF, and the
        # process transport (hence its wait()) only finishes when every pipe has.
        while chunk := await reader.read(_CHUNK):
            if self.truncated:
                continue
            room = self.limit - len(self.data)
            if len(chunk) > room:
                self.data += chunk[:room]
                self.truncated = True
                overflow.set()
                continue
            self.data += chunk


async def _stats(cgroup: Cgroup | None) -> CgroupStats | None:
    return None if cgroup is None else await asyncio.to_thread(cgroup.stats)


async def supervise(
    watched: Watched,
    *,
    timeout: float,  # noqa: ASYNC109 (the public interface takes a timeout)
    max_output: int,
    cgroup: Cgroup | None,
    backend: str,
    warnings: tuple[str, ...] = (),
    before: CgroupStats | None = None,
) -> ExecResult:
    """Wait for the command; stop it on timeout, output overflow or hitting the pids limit."""
    start = time.monotonic()
    out, err = _Capped(max_output), _Capped(max_output)
    overflow = asyncio.Event()
    readers = [
        asyncio.ensure_future(out.drain(watched.stdout, overflow)),
        asyncio.ensure_future(err.drain(watched.stderr, overflow)),
    ]
    waiter = asyncio.ensure_future(watched.wait)
    overflowed = asyncio.ensure_future(overflow.wait())
    killed_by: KilledBy | None = None
    deadline = start + timeout
    try:
        while not waiter.done():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                killed_by = "timeout"
                break
            # Only a cgroup knows that fork() failed for lack of pids; poll it while the command runs.
            poll = min(remaining, _POLL) if cgroup is not None else remaining
            await asyncio.wait({waiter, overflowed}, timeout=poll, return_when=asyncio.FIRST_COMPLETED)
            if overflowed.done() and not waiter.done():
                killed_by = "output"
                break
            if cgroup is not None and before is not None and not waiter.done():
                now = await _stats(cgroup)
                if now is not None and now.pids_max_hits > before.pids_max_hits:
                    killed_by = "pids"
                    break
        if killed_by is not None:
            await watched.kill()
        code, cpu, peak = await waiter
        # The main process may exit while descendants still hold the pipes open.
        _, pending = await asyncio.wait(readers, timeout=0.5)
        if pending:
            await watched.kill()
            await asyncio.wait(readers, timeout=2.0)
    finally:
        overflowed.cancel()
        for task in [*readers, waiter]:
            if not task.done():
                task.cancel()
        if watched.stdin_task is not None and not watched.stdin_task.done():
            watched.stdin_task.cancel()
    after = await _stats(cgroup)
    if after is not None:
        if killed_by is None and before is not None and after.oom_kills > before.oom_kills:
            killed_by = "memory"
        if killed_by is None and overflow.is_set():
            killed_by = "output"
        cpu = max(cpu, after.cpu_time - (before.cpu_time if before else 0.0))
        peak = max(peak, after.peak_memory)
    elif killed_by is None and overflow.is_set():
        killed_by = "output"
    return ExecResult(
        exit_code=code,
        stdout=bytes(out.data),
        stderr=bytes(err.data),
        stdout_truncated=out.truncated,
        stderr_truncated=err.truncated,
        wall_time=time.monotonic() - start,
        cpu_time=cpu,
        peak_memory=peak,
        killed_by=killed_by,
        backend=backend,
        warnings=warnings,
    )
