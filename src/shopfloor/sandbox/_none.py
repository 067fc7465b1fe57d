"""``isolation: none``: runs commands directly on the host. Development only; every exec warns loudly."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
from collections.abc import Sequence
from pathlib import Path

from shopfloor.sandbox._base import Sandbox, SandboxSession
from shopfloor.sandbox._caps import Capabilities
from shopfloor.sandbox._policy import Command, ExecResult, Mount, SandboxPolicy
from shopfloor.sandbox._supervise import Watched, exit_status, feed_stdin, supervise

__all__ = ["NoSandbox", "UnconfinedSession"]

log = logging.getLogger("shopfloor.sandbox")
WARNING = (
    "SANDBOX DISABLED (isolation: none): the command runs on the host with this process's privileges, "
    "network and files. Use only for development."
)


class UnconfinedSession(SandboxSession):
    backend = "none"

    def __init__(self, policy: SandboxPolicy, workspace: Path) -> None:
        self.policy = policy
        self.workspace = workspace

    async def exec(self, command: Command) -> ExecResult:
        log.warning(WARNING)
        process = await asyncio.create_subprocess_exec(
            *command.argv,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            cwd=self.workspace,
            env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), **(command.env or {})},
            start_new_session=True,
        )
        assert process.stdin is not None and process.stdout is not None and process.stderr is not None

        async def wait() -> tuple[int, float, int]:
            return exit_status(await process.wait()), 0.0, 0

        async def kill() -> None:
            try:
                os.killpg(process.pid, signal.SIGKILL)
            except ProcessLookupError:
                return

        try:
            return await supervise(
                Watched(
                    stdout=process.stdout,
                    stderr=process.stderr,
                    wait=wait(),
                    kill=kill,
                    stdin_task=asyncio.ensure_future(feed_stdin(process.stdin, command.stdin)),
                ),
                timeout=self.policy.timeout if command.timeout is None else command.timeout,
                max_output=self.policy.max_output,
                cgroup=None,
                backend=self.backend,
                warnings=(WARNING,),
            )
        finally:
            await kill()
            await process.wait()

    async def close(self) -> None:
        return None


class NoSandbox(Sandbox):
    name = "none"
    description = "no isolation at all (development only)"

    @classmethod
    def unavailable(cls, caps: Capabilities) -> str | None:
        return None

    async def _open(
        self, policy: SandboxPolicy, mounts: Sequence[Mount], *, workspace: Path, tenant: str
    ) -> SandboxSession:
        await asyncio.to_thread(workspace.mkdir, parents=True, exist_ok=True)
        return UnconfinedSession(policy, workspace)
