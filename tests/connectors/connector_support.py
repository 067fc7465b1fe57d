"""Helpers of the connector tests: ports, server processes, the tests' secret resolver, specs."""

from __future__ import annotations

import os
import socket
import subprocess
import time

from shopfloor.errors import SecretError
from shopfloor.spec import ConnectorSpec


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for_port(port: int, process: subprocess.Popen[bytes], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the server exited with {process.returncode} before listening")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"nothing listens on 127.0.0.1:{port} after {timeout} s")


def stop(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    try:
        process.wait(5)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def secrets_from_env(name: str) -> str:
    """The tests' secret resolver: ``SHOPFLOOR_SECRET_NAME`` from the environment."""
    value = os.environ.get(f"SHOPFLOOR_SECRET_{name}")
    if value is None:
        raise SecretError(f"no secret {name!r}")
    return value


def connector(**fields: object) -> ConnectorSpec:
    return ConnectorSpec.model_validate(fields)
