"""The escape suite: each test runs an attack inside the sandbox and checks both sides.

``attack`` runs a Python script with the system interpreter in a one-shot bwrap sandbox (every layer on)
and returns the result; scripts print one JSON object with what they observed.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

import pytest

from shopfloor.config import Settings
from shopfloor.sandbox import (
    Command,
    ExecRequest,
    ExecResult,
    Mount,
    SandboxPolicy,
    get_backend,
    open_sandbox,
    probe_capabilities,
    run_sandboxed,
)

Attack = Callable[..., Awaitable[ExecResult]]

PRELUDE = """
import ctypes, errno, json, os, signal, socket, sys, time
def report(**values):
    print(json.dumps(values))
def attempt(action):
    try:
        value = action()
        return {"ok": True, "value": repr(value)[:200]}
    except OSError as exc:
        return {"ok": False, "errno": errno.errorcode.get(exc.errno, str(exc.errno)), "error": str(exc)}
"""


@pytest.fixture
def attack(
    bwrap_ready: None, workspace: Path, sandbox_settings: Settings
) -> Callable[..., Awaitable[ExecResult]]:
    async def run(
        script: str,
        *,
        policy: SandboxPolicy | None = None,
        tenant: str = "attacker",
        mounts: Sequence[Mount] = (),
        session: bool = False,
        timeout: float | None = None,  # noqa: ASYNC109 (passed through to exec)
    ) -> ExecResult:
        policy = policy or SandboxPolicy(isolation="bwrap", memory=256 << 20, pids=64, timeout=10)
        argv = ["/usr/bin/python3", "-c", PRELUDE + script]
        if session:
            async with await open_sandbox(
                policy, mounts, workspace=workspace, tenant=tenant, settings=sandbox_settings
            ) as live:
                return await live.exec(Command(argv=tuple(argv), timeout=timeout))
        return await run_sandboxed(
            ExecRequest(
                policy=policy,
                command=Command(argv=tuple(argv), timeout=timeout),
                workspace=workspace,
                tenant=tenant,
                mounts=tuple(mounts),
            ),
            settings=sandbox_settings,
        )

    return run


@pytest.fixture(params=["bwrap", "landlock"])
def isolation(request: pytest.FixtureRequest) -> str:
    """Each backend that confines on this host; the test runs once per backend."""
    return _usable(str(request.param))


@pytest.fixture(params=["bwrap", "landlock", "gvisor"])
def any_isolation(request: pytest.FixtureRequest) -> str:
    """As ``isolation``, and gVisor too (for tests without network)."""
    return _usable(str(request.param))


def _usable(name: str) -> str:
    reason = get_backend(name).unavailable(probe_capabilities())
    if reason is not None:
        pytest.skip(f"{name} backend unavailable here: {reason}")
    return name


def observed(result: ExecResult) -> dict[str, Any]:
    """The JSON the attack script printed last."""
    lines = result.stdout.decode().strip().splitlines()
    assert lines, f"the attack printed nothing; stderr: {result.stderr.decode()}"
    value = json.loads(lines[-1])
    assert isinstance(value, dict)
    return value
