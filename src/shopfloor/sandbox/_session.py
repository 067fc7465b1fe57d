"""A session served by the in-sandbox helper (``_helper_main``): one sandbox, many cheap execs."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
from abc import abstractmethod
from collections.abc import Mapping, Sequence
from pathlib import Path

from shopfloor.errors import SandboxError
from shopfloor.sandbox._base import SandboxSession
from shopfloor.sandbox._host import Confinement, spawn
from shopfloor.sandbox._layout import PROXY_PORT, FdBag, sandbox_env
from shopfloor.sandbox._policy import Command, ExecResult
from shopfloor.sandbox._proxy import AllowListProxy
from shopfloor.sandbox._supervise import Watched, supervise

__all__ = ["HELPER_SOURCE", "HelperSession"]

HELPER_SOURCE = (Path(__file__).parent / "_helper_main.py").read_text()
_READY_TIMEOUT = 15.0
_KILL_GRACE = 3.0
_MESSAGE = 1 << 16


def _write_all(fd: int, data: bytes) -> None:
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
    except BrokenPipeError:
        pass
    finally:
        os.close(fd)


async def _pipe_reader(fd: int) -> tuple[asyncio.StreamReader, asyncio.BaseTransport]:
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    transport, _ = await loop.connect_read_pipe(
        lambda: asyncio.StreamReaderProtocol(reader), os.fdopen(fd, "rb", buffering=0)
    )
    return reader, transport


class HelperSession(SandboxSession):
    """Backends say how to start the helper (``helper_argv``); the protocol and supervision are here."""

    private_namespaces = False  # the launcher makes network, IPC, mount and PID namespaces (no bwrap)

    def __init__(self, confinement: Confinement, *, backend: str) -> None:
        self.confinement = confinement
        self.backend = backend
        self.proxy: AllowListProxy | None = None
        self._sock: socket.socket | None = None
        self._process: asyncio.subprocess.Process | None = None
        self._stderr = bytearray()
        self._drain: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()
        self._closed = False
        self._dead: str | None = None

    @abstractmethod
    def helper_argv(self, control_fd: int, config: dict[str, object], fds: FdBag) -> list[str]:
        """The launcher's program and arguments that start the helper with ``control_fd`` and ``config``."""

    def exec_env(self, extra: Mapping[str, str] | None) -> dict[str, str]:
        """The environment of one command: the sandbox's base, proxy settings, then the caller's."""
        return sandbox_env(self.confinement, extra)

    async def start(self) -> None:
        c = self.confinement
        config: dict[str, object] = {}
        fds = FdBag(stage_dir=c.stage_dir)
        if c.policy.allows_network:
            # The helper hands each connection to 127.0.0.1:3128 inside to the proxy over this pair.
            ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
            self.proxy = AllowListProxy(c.policy, ours, tenant=c.tenant)
            await self.proxy.start()
            config.update({"proxy_fd": fds.add(theirs.detach()), "proxy_port": PROXY_PORT})
        host, child = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        try:
            argv = self.helper_argv(fds.add(child.detach()), config, fds)
            self._process = await spawn(
                c,
                argv,
                pass_fds=fds.fds,
                staged=list(fds.staged),
                private_namespaces=self.private_namespaces,
                stdin=asyncio.subprocess.DEVNULL,
            )
        finally:
            fds.close()
        host.setblocking(False)
        self._sock = host
        self._drain = asyncio.ensure_future(self._drain_stderr())
        try:
            ready = await asyncio.wait_for(self._recv(), _READY_TIMEOUT)
        except TimeoutError:
            ready = None
        if not ready or not ready.get("ready"):
            await self._shutdown()
            raise SandboxError(
                f"the {self.backend} sandbox did not start: {self._stderr.decode(errors='replace').strip()}"
            )

    async def _drain_stderr(self) -> None:
        assert self._process is not None and self._process.stderr is not None
        while chunk := await self._process.stderr.read(65536):
            if len(self._stderr) < _MESSAGE:
                self._stderr += chunk

    async def _recv(self) -> dict[str, object] | None:
        assert self._sock is not None
        loop = asyncio.get_running_loop()
        data = await loop.sock_recv(self._sock, _MESSAGE)
        if not data:
            return None
        value = json.loads(data)
        return value if isinstance(value, dict) else None

    async def _send(self, message: dict[str, object], fds: Sequence[int] = ()) -> None:
        assert self._sock is not None
        payload = json.dumps(message).encode()
        while True:
            try:
                socket.send_fds(self._sock, [payload], list(fds))
                return
            except BlockingIOError:
                await asyncio.sleep(0.001)

    async def exec(self, command: Command) -> ExecResult:
        if not command.argv:
            raise SandboxError("exec needs a command")
        async with self._lock:
            if self._closed or self._dead:
                raise SandboxError(
                    f"sandbox session is {'closed' if self._closed else 'dead: ' + str(self._dead)}"
                )
            return await self._exec(list(command.argv), command.stdin, command.env, command.timeout)

    async def _exec(
        self,
        argv: list[str],
        stdin: bytes,
        env: Mapping[str, str] | None,
        timeout: float | None,  # noqa: ASYNC109 (the public interface takes a timeout)
    ) -> ExecResult:
        c = self.confinement
        cgroup = c.cgroup
        before = None
        if cgroup is not None:
            await asyncio.to_thread(cgroup.reset_peak)
            before = await asyncio.to_thread(cgroup.stats)
        in_r, in_w = os.pipe2(os.O_CLOEXEC)
        out_r, out_w = os.pipe2(os.O_CLOEXEC)
        err_r, err_w = os.pipe2(os.O_CLOEXEC)
        try:
            await self._send({"op": "exec", "argv": argv, "env": self.exec_env(env)}, [in_r, out_w, err_w])
        except OSError as exc:
            for fd in (in_w, out_r, err_r):
                os.close(fd)
            self._dead = f"the helper is gone ({exc}): " + self._stderr.decode(errors="replace").strip()
            raise SandboxError(f"sandbox session is dead: {self._dead}") from exc
        finally:
            for fd in (in_r, out_w, err_w):
                os.close(fd)
        stdin_task = asyncio.ensure_future(asyncio.to_thread(_write_all, in_w, stdin))
        stdout, out_transport = await _pipe_reader(out_r)
        stderr, err_transport = await _pipe_reader(err_r)
        kill_sent = asyncio.Event()
        backstop: list[asyncio.TimerHandle] = []

        async def wait() -> tuple[int, float, int]:
            message = await self._recv()
            if message is None:
                self._dead = "the helper exited: " + self._stderr.decode(errors="replace").strip()
                if cgroup is not None:
                    await asyncio.to_thread(cgroup.kill_all)
                return 137, 0.0, 0
            code, cpu, rss = message.get("exit"), message.get("cpu"), message.get("maxrss")
            return (
                int(code) if isinstance(code, int) else 137,
                float(cpu) if isinstance(cpu, int | float) else 0.0,
                int(rss) if isinstance(rss, int) else 0,
            )

        async def kill() -> None:
            if kill_sent.is_set():
                return
            kill_sent.set()
            await self._send({"op": "kill"})
            backstop.append(asyncio.get_running_loop().call_later(_KILL_GRACE, self._backstop_kill))

        try:
            return await supervise(
                Watched(stdout=stdout, stderr=stderr, wait=wait(), kill=kill, stdin_task=stdin_task),
                timeout=c.policy.timeout if timeout is None else timeout,
                max_output=c.policy.max_output,
                cgroup=cgroup,
                backend=self.backend,
                warnings=tuple(c.warnings),
                before=before,
            )
        finally:
            for handle in backstop:
                handle.cancel()
            out_transport.close()
            err_transport.close()

    def _backstop_kill(self) -> None:
        # The helper did not confirm the kill in time: it is stuck or was subverted. Kill the sandbox.
        if self._process is not None and self._process.returncode is None:
            self._dead = "the helper did not stop a command in time; the sandbox was killed"
            with contextlib.suppress(ProcessLookupError):
                self._process.kill()

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        async with self._lock:
            await self._shutdown()

    async def _shutdown(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None
        try:
            if self._process is not None:
                try:
                    await asyncio.wait_for(self._process.wait(), 2.0)
                except TimeoutError:
                    self._process.kill()
                    await self._process.wait()
            if self._drain is not None:
                await asyncio.wait({self._drain}, timeout=1.0)
                self._drain.cancel()
        finally:
            if self.proxy is not None:
                await self.proxy.close()
            await self.confinement.release()
