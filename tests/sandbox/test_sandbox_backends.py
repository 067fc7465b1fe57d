"""Backend selection, the development-only ``none`` backend, Landlock and gVisor."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
from pathlib import Path

import pytest

from shopfloor.config import Settings
from shopfloor.errors import SandboxPolicyError, SandboxUnavailableError
from shopfloor.sandbox import (
    AUTO_ORDER,
    Capabilities,
    Command,
    ExecRequest,
    Mount,
    SandboxPolicy,
    get_backend,
    open_sandbox,
    probe_capabilities,
    run_sandboxed,
    sandbox_backends,
    select_backend,
)

NOTHING = Capabilities(
    root=False,
    bwrap=None,
    bwrap_version=None,
    userns="user.max_user_namespaces is 0",
    cgroup=None,
    seccomp="no libseccomp",
    landlock_abi=0,
    runsc=None,
    compiler=None,
)


def test_registry_lists_backends() -> None:
    assert {"bwrap", "landlock", "gvisor", "none"} <= set(sandbox_backends().names())
    with pytest.raises(SandboxUnavailableError, match="unknown sandbox backend 'docker'"):
        get_backend("docker")


def test_auto_refuses_when_nothing_can_confine(sandbox_settings: Settings) -> None:
    with pytest.raises(SandboxUnavailableError) as info:
        select_backend(SandboxPolicy(), sandbox_settings, NOTHING)
    message = str(info.value)
    assert "bwrap: bubblewrap is not installed" in message
    assert "landlock: this kernel has no Landlock" in message
    assert "Fix: install bubblewrap" in message and "isolation: none" in message


def test_named_backend_unavailable_says_why(sandbox_settings: Settings) -> None:
    with pytest.raises(SandboxUnavailableError, match="'gvisor' cannot run here: runsc is not installed"):
        select_backend(SandboxPolicy(isolation="gvisor"), sandbox_settings, NOTHING)
    # 'none' is always possible, but only when asked for by name.
    assert select_backend(SandboxPolicy(isolation="none"), sandbox_settings, NOTHING).name == "none"


def test_auto_prefers_bwrap_then_landlock(sandbox_settings: Settings) -> None:
    full = dataclasses.replace(
        NOTHING,
        root=True,
        bwrap="/usr/bin/bwrap",
        userns=None,
        seccomp=None,
        landlock_abi=7,
        compiler="/usr/bin/cc",
    )
    assert AUTO_ORDER == ("bwrap", "landlock")
    assert select_backend(SandboxPolicy(), sandbox_settings, full).name == "bwrap"
    no_userns = dataclasses.replace(full, userns="apparmor forbids it")
    assert select_backend(SandboxPolicy(), sandbox_settings, no_userns).name == "landlock"
    configured = sandbox_settings.model_copy(
        update={"sandbox": sandbox_settings.sandbox.model_copy(update={"backend": "landlock"})}
    )
    assert select_backend(SandboxPolicy(), configured, full).name == "landlock"


async def test_none_backend_warns_on_every_exec(
    workspace: Path, sandbox_settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    policy = SandboxPolicy(isolation="none", timeout=5)
    caplog.set_level(logging.WARNING, logger="shopfloor.sandbox")
    async with await open_sandbox(
        policy, workspace=workspace, tenant="dev", settings=sandbox_settings
    ) as session:
        first = await session.exec(Command(argv=("pwd",)))
        second = await session.exec(Command(argv=("sleep", "5"), timeout=0.3))
    assert first.stdout.decode().strip() == str(workspace)
    assert second.killed_by == "timeout"
    assert all("SANDBOX DISABLED" in w for w in (*first.warnings, *second.warnings))
    assert caplog.text.count("SANDBOX DISABLED") == 2


def _usable(name: str) -> str | None:
    return get_backend(name).unavailable(probe_capabilities())


@pytest.mark.skipif(
    _usable("landlock") is not None, reason=f"landlock backend unavailable: {_usable('landlock')}"
)
async def test_landlock_confines_files_network_and_signals(
    workspace: Path, sandbox_settings: Settings, tmp_path: Path
) -> None:
    policy = SandboxPolicy(isolation="landlock", memory=256 << 20, timeout=10)
    script = """
import os, socket, json
out = {}
def attempt(name, action):
    try:
        action()
        out[name] = 'ok'
    except OSError as exc:
        out[name] = exc.errno
attempt('read_hostname', lambda: open('/etc/hostname').read())
attempt('write_tmp', lambda: open('/tmp/shopfloor-landlock-probe-' + os.urandom(8).hex(), 'w'))
attempt('write_workspace', lambda: open('inside.txt', 'w').write('x'))
attempt('write_private_tmp', lambda: open(os.path.join(os.environ['TMPDIR'], 'x'), 'w').write('x'))
attempt('tcp', lambda: socket.create_connection(('127.0.0.1', 5432), timeout=1))
attempt('signal_host', lambda: os.kill(HOST_PID, 0))
out['uid'] = os.getuid()
print(json.dumps(out))
"""
    async with await open_sandbox(
        policy, workspace=workspace, tenant="ll", settings=sandbox_settings
    ) as session:
        result = await session.exec(
            Command(argv=("python3", "-c", script.replace("HOST_PID", str(os.getpid()))))
        )
        again = await session.exec(Command(argv=("cat", "inside.txt")))
        timed = await session.exec(Command(argv=("sleep", "5"), timeout=0.3))
    import json

    seen = json.loads(result.stdout)
    assert seen["read_hostname"] == 13 and seen["write_tmp"] == 13
    assert seen["write_workspace"] == "ok" and seen["write_private_tmp"] == "ok"
    assert seen["tcp"] == 1 and seen["signal_host"] == 3  # ESRCH: no host process is visible
    assert seen["uid"] != 0
    assert again.stdout == b"x" and timed.killed_by == "timeout"
    with pytest.raises(SandboxPolicyError, match="host path"):
        await open_sandbox(
            policy,
            [Mount(host_path=tmp_path, sandbox_path="/data")],
            workspace=workspace,
            tenant="ll",
            settings=sandbox_settings,
        )


@pytest.mark.slow
@pytest.mark.skipif(_usable("gvisor") is not None, reason=f"gvisor backend unavailable: {_usable('gvisor')}")
async def test_gvisor_runs_confined(workspace: Path, sandbox_settings: Settings) -> None:
    policy = SandboxPolicy(isolation="gvisor", memory=512 << 20, timeout=30)
    result = await run_sandboxed(
        ExecRequest(
            policy=policy,
            command=Command(
                argv=(
                    "sh",
                    "-c",
                    "id -u; cat /etc/shadow; echo out > /workspace/f; test -d /root || echo no-root",
                )
            ),
            workspace=workspace,
            tenant="gv",
        ),
        settings=sandbox_settings,
    )
    lines = result.stdout.decode().split()
    assert result.backend == "gvisor"
    assert lines == [lines[0], "no-root"] and lines[0] != "0"
    assert b"/etc/shadow" in result.stderr
    assert (await asyncio.to_thread((workspace / "f").read_text)) == "out\n"
    with pytest.raises(SandboxPolicyError, match="no network"):
        await open_sandbox(
            dataclasses.replace(policy, network=SandboxPolicy.parse_network("example.com:443")),
            workspace=workspace,
            tenant="gv",
            settings=sandbox_settings,
        )
