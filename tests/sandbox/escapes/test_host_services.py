"""Host services and processes: Unix sockets (PostgreSQL, MariaDB, one the test makes), /proc.

Each test runs once per backend that confines here (bwrap, and the Landlock fallback).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import socket
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from shopfloor.sandbox import SandboxPolicy

from .conftest import Attack, observed

# Real host services on this machine kind: a sandbox reaching them could log in as their superuser.
HOST_SOCKETS = ("/var/run/postgresql/.s.PGSQL.5432", "/run/mysqld/mysqld.sock")


@dataclass
class UnixServer:
    path: str
    dgram_path: str
    abstract: str
    listeners: list[socket.socket] = field(default_factory=list)

    def reached(self) -> list[str]:
        """Whoever connected or sent a datagram so far."""
        seen = []
        for listener in self.listeners:
            while True:
                try:
                    if listener.type == socket.SOCK_DGRAM:
                        seen.append(f"datagram {listener.recv(100)!r}")
                    else:
                        accepted, _ = listener.accept()
                        accepted.close()
                        seen.append(f"connection to {listener.getsockname()!r}")
                except BlockingIOError:
                    break
        return seen


@pytest.fixture
def unix_server() -> Iterator[UnixServer]:
    """Pathname, abstract and datagram Unix sockets anyone may reach, in a directory anyone may enter."""
    directory = Path(f"/tmp/sf-esc-unix-{secrets.token_hex(4)}")
    directory.mkdir(mode=0o755)
    server = UnixServer(
        path=str(directory / "host.sock"),
        dgram_path=str(directory / "host-dgram.sock"),
        abstract=f"shopfloor-esc-{secrets.token_hex(4)}",
    )
    try:
        for address, kind in (
            (server.path, socket.SOCK_STREAM),
            ("\0" + server.abstract, socket.SOCK_STREAM),
            (server.dgram_path, socket.SOCK_DGRAM),
        ):
            listener = socket.socket(socket.AF_UNIX, kind)
            server.listeners.append(listener)
            listener.bind(address)
            if kind == socket.SOCK_STREAM:
                listener.listen(8)
            listener.setblocking(False)
        for path in (server.path, server.dgram_path):
            os.chmod(path, 0o777)
        # The host itself can reach them: a refusal below is the sandbox's doing.
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
            probe.connect(server.path)
        assert len(server.reached()) == 1
        yield server
    finally:
        for listener in server.listeners:
            listener.close()
        for path in (server.path, server.dgram_path):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)
        directory.rmdir()


def _connect(address: str) -> str:
    return (
        "attempt(lambda: (lambda s: (s.settimeout(2), s.connect("
        f"{address!r}), s.send(b'x'))[-1])(socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)))"
    )


async def test_host_unix_sockets(attack: Attack, isolation: str, unix_server: UnixServer) -> None:
    present = [path for path in HOST_SOCKETS if await asyncio.to_thread(os.path.exists, path)]
    targets = {path: _connect(path) for path in [*present, unix_server.path]}
    targets["abstract"] = _connect("\0" + unix_server.abstract)
    path = unix_server.path
    # A datagram socket, or a datagram socket pair, can send to a path without connecting.
    dgram = unix_server.dgram_path
    targets["dgram"] = (
        f"attempt(lambda: socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM).sendto(b'x', {dgram!r}))"
    )
    targets["dgram_pair"] = (
        f"attempt(lambda: socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)[0].sendto(b'x', {dgram!r}))"
    )
    script = "report(**{" + ", ".join(f"{k!r}: {v}" for k, v in targets.items()) + "}, "
    script += "stream_pair=attempt(lambda: (lambda pair: pair[0].send(b'x'))(socket.socketpair())))"
    policy = SandboxPolicy(isolation=isolation, timeout=15)  # type: ignore[arg-type]
    seen = observed(await attack(script, policy=policy))
    assert seen.pop("stream_pair")["ok"], "a connected stream pair reaches nothing outside; asyncio needs it"
    assert set(seen) == {*present, path, "abstract", "dgram", "dgram_pair"}
    for name, outcome in seen.items():
        assert not outcome["ok"], (isolation, name, outcome)
        assert outcome["errno"] in ("ENOENT", "EPERM", "ECONNREFUSED"), (isolation, name, outcome)
    await asyncio.sleep(0.1)
    assert unix_server.reached() == []


async def test_host_processes_are_invisible(attack: Attack, isolation: str) -> None:
    marker = f"shopfloor-victim-{secrets.token_hex(4)}"
    victim = await asyncio.create_subprocess_exec(sys.executable, "-c", "import time; time.sleep(30)", marker)
    try:
        script = f"""
pids = [p for p in os.listdir('/proc') if p.isdigit()]
cmdlines = []
for pid in pids:
    try:
        cmdlines.append(open(f'/proc/{{pid}}/cmdline', 'rb').read().decode(errors='replace'))
    except OSError:
        pass
report(
    pids=len(pids),
    seen={marker[:9]!r} + {marker[9:]!r} in ' '.join(cmdlines),  # not the marker itself: this very cmdline
    kill=attempt(lambda: os.kill({victim.pid}, signal.SIGKILL)),
    host_pid=attempt(lambda: open('/proc/{victim.pid}/cmdline').read()),
)
"""
        policy = SandboxPolicy(isolation=isolation, timeout=15)  # type: ignore[arg-type]
        for session in (False, True):
            seen = observed(await attack(script, policy=policy, session=session))
            assert seen["seen"] is False, (isolation, seen)
            # The helper (or bwrap's init), the command and nothing else of the host.
            assert seen["pids"] <= 4, (isolation, seen)
            assert seen["kill"]["errno"] == "ESRCH" and not seen["host_pid"]["ok"], (isolation, seen)
        assert victim.returncode is None
    finally:
        victim.kill()
        await victim.wait()
