"""The bwrap backend end to end: one-shot runs, sessions, limits, interpreters."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

import pytest

from shopfloor.config import Settings
from shopfloor.sandbox import (
    Command,
    ExecRequest,
    SandboxPolicy,
    open_sandbox,
    python_runtime,
    run_sandboxed,
    tenant_uid,
)

pytestmark = pytest.mark.usefixtures("bwrap_ready")


async def test_one_shot_runs_as_tenant_in_workspace(
    policy: SandboxPolicy, workspace: Path, sandbox_settings: Settings
) -> None:
    code = "import os,sys; print(os.getuid(), os.getcwd(), sys.stdin.read(), os.environ.get('GREETING'))"
    result = await run_sandboxed(
        ExecRequest(
            policy=policy,
            command=Command(argv=("python3", "-c", code), stdin=b"in", env={"GREETING": "hi"}),
            workspace=workspace,
            tenant="acme",
        ),
        settings=sandbox_settings,
    )
    uid = tenant_uid("acme", sandbox_settings)
    assert result.stdout.decode().split() == [str(uid), "/workspace", "in", "hi"]
    assert result.exit_code == 0 and result.killed_by is None and result.backend == "bwrap"
    assert result.peak_memory > 0 and result.cpu_time > 0
    stat = await asyncio.to_thread(workspace.stat)
    assert (stat.st_uid, stat.st_mode & 0o777) == (uid, 0o700)


async def test_exit_status_and_missing_command(
    policy: SandboxPolicy, workspace: Path, sandbox_settings: Settings
) -> None:
    result = await run_sandboxed(
        ExecRequest(
            policy=policy,
            command=Command(argv=("sh", "-c", "echo err >&2; exit 7")),
            workspace=workspace,
            tenant="t",
        ),
        settings=sandbox_settings,
    )
    assert (result.exit_code, result.stderr) == (7, b"err\n")
    missing = await run_sandboxed(
        ExecRequest(
            policy=policy, command=Command(argv=("no-such-command",)), workspace=workspace, tenant="t"
        ),
        settings=sandbox_settings,
    )
    assert missing.exit_code != 0 and b"no-such-command" in missing.stderr


async def test_session_keeps_state_between_execs(
    policy: SandboxPolicy, workspace: Path, sandbox_settings: Settings
) -> None:
    async with await open_sandbox(
        policy, workspace=workspace, tenant="t", settings=sandbox_settings
    ) as session:
        first = await session.exec(
            Command(argv=("sh", "-c", "echo one > /tmp/state; echo two > /workspace/out.txt"))
        )
        assert first.exit_code == 0, first.stderr
        second = await session.exec(Command(argv=("cat", "/tmp/state", "/workspace/out.txt")))
        assert second.stdout == b"one\ntwo\n"
        piped = await session.exec(Command(argv=("wc", "-c"), stdin=b"x" * 200_000))
        assert piped.stdout.strip() == b"200000"
        missing = await session.exec(Command(argv=("no-such-command",)))
        assert missing.exit_code == 127 and b"no-such-command" in missing.stderr
    assert (workspace / "out.txt").read_text() == "two\n"
    with pytest.raises(Exception, match="closed"):
        await session.exec(Command(argv=("true",)))


async def test_timeout_kills_children_that_ignore_sigterm(
    policy: SandboxPolicy, workspace: Path, sandbox_settings: Settings
) -> None:
    marker = workspace / "survivor"
    script = (
        "import os,signal,time\n"
        "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
        "if os.fork() == 0:\n"
        "    os.setsid()\n"
        "    time.sleep(1.5)\n"
        "    open('/workspace/survivor','w').write('alive')\n"
        "time.sleep(60)\n"
    )
    async with await open_sandbox(
        policy, workspace=workspace, tenant="t", settings=sandbox_settings
    ) as session:
        result = await session.exec(Command(argv=("python3", "-c", script), timeout=0.5))
        assert result.killed_by == "timeout" and result.exit_code == 137
        assert 0.5 <= result.wall_time < 3
        code = "import os; print(len([p for p in os.listdir('/proc') if p.isdigit()]))"
        after = await session.exec(Command(argv=("python3", "-c", code)))
        # Only the helper (pid 1) and this python are left.
        assert after.stdout.strip() == b"2"
    one_shot = await run_sandboxed(
        ExecRequest(
            policy=policy,
            command=Command(argv=("python3", "-c", script), timeout=0.5),
            workspace=workspace,
            tenant="t",
        ),
        settings=sandbox_settings,
    )
    assert one_shot.killed_by == "timeout"
    await asyncio.sleep(1.5)
    assert not marker.exists()


async def test_output_is_capped(workspace: Path, sandbox_settings: Settings) -> None:
    policy = SandboxPolicy(isolation="bwrap", max_output=1000, timeout=10)
    result = await run_sandboxed(
        ExecRequest(
            policy=policy, command=Command(argv=("sh", "-c", "yes flood")), workspace=workspace, tenant="t"
        ),
        settings=sandbox_settings,
    )
    assert result.killed_by == "output" and result.stdout_truncated
    assert len(result.stdout) == 1000 and result.wall_time < 5
    small = await run_sandboxed(
        ExecRequest(policy=policy, command=Command(argv=("echo", "ok")), workspace=workspace, tenant="t"),
        settings=sandbox_settings,
    )
    assert small.killed_by is None and not small.truncated


async def test_venv_from_system_python_runs_inside(
    tmp_path: Path, policy: SandboxPolicy, workspace: Path, sandbox_settings: Settings
) -> None:
    venv = tmp_path / "venv"
    await asyncio.to_thread(
        subprocess.run, ["/usr/bin/python3", "-m", "venv", "--without-pip", str(venv)], check=True
    )
    site = next((venv / "lib").glob("python3*/site-packages"))
    (site / "skilldep.py").write_text("VALUE = 42\n")
    runtime = python_runtime(venv)
    assert runtime.executable == str(venv / "bin" / "python")
    result = await run_sandboxed(
        ExecRequest(
            policy=policy,
            command=Command(
                argv=(runtime.executable, "-c", "import skilldep, sys; print(skilldep.VALUE, sys.prefix)")
            ),
            workspace=workspace,
            tenant="t",
            mounts=tuple(runtime.mounts),
        ),
        settings=sandbox_settings,
    )
    assert result.stdout.decode().split() == ["42", str(venv)], result.stderr
    # The venv is read-only inside.
    write = await run_sandboxed(
        ExecRequest(
            policy=policy,
            command=Command(argv=(runtime.executable, "-c", f"open('{site}/x.py', 'w')")),
            workspace=workspace,
            tenant="t",
            mounts=tuple(runtime.mounts),
        ),
        settings=sandbox_settings,
    )
    assert write.exit_code == 1 and b"Read-only file system" in write.stderr


async def test_interpreter_outside_usr_is_mounted(
    policy: SandboxPolicy, workspace: Path, sandbox_settings: Settings
) -> None:
    base = Path(sys.base_prefix) / "bin" / "python3"
    runtime = python_runtime(interpreter=base)
    result = await run_sandboxed(
        ExecRequest(
            policy=policy,
            command=Command(argv=(runtime.executable, "-c", "import sys; print(sys.version_info[:2])")),
            workspace=workspace,
            tenant="t",
            mounts=tuple(runtime.mounts),
        ),
        settings=sandbox_settings,
    )
    assert result.stdout.strip() == str(sys.version_info[:2]).encode(), result.stderr


async def test_writable_mount(
    tmp_path: Path, policy: SandboxPolicy, workspace: Path, sandbox_settings: Settings
) -> None:
    from shopfloor.sandbox import Mount

    shared = tmp_path / "shared"
    shared.mkdir(mode=0o777)
    os.chmod(shared, 0o777)
    result = await run_sandboxed(
        ExecRequest(
            policy=policy,
            command=Command(argv=("sh", "-c", "echo hi > /data/f && cat /data/f")),
            workspace=workspace,
            tenant="t",
            mounts=(Mount(host_path=shared, sandbox_path="/data", read_only=False),),
        ),
        settings=sandbox_settings,
    )
    assert result.stdout == b"hi\n", result.stderr
    assert (shared / "f").read_text() == "hi\n"


def _leftovers(uid: int) -> list[str]:
    """Our children (a zombie would be one) and any host process running as the tenant's uid."""
    me = str(os.getpid())
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
            owner = Path(f"/proc/{pid}").stat().st_uid
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2 :].split()
        if fields[1] == me or owner == uid:
            found.append(f"{pid}:{fields[0]}:{stat.split()[1]}")
    return found


async def test_no_process_or_zombie_survives(
    policy: SandboxPolicy, workspace: Path, sandbox_settings: Settings
) -> None:
    script = (
        "import os, time\nfor _ in range(5):\n    if os.fork() == 0:\n        os.setsid(); time.sleep(30)\n"
    )
    await run_sandboxed(
        ExecRequest(
            policy=policy, command=Command(argv=("python3", "-c", script)), workspace=workspace, tenant="t"
        ),
        settings=sandbox_settings,
    )
    async with await open_sandbox(
        policy, workspace=workspace, tenant="t", settings=sandbox_settings
    ) as session:
        await session.exec(Command(argv=("python3", "-c", script)))
        code = "import os; print(len([p for p in os.listdir('/proc') if p.isdigit()]))"
        assert (await session.exec(Command(argv=("python3", "-c", code)))).stdout.strip() == b"2"
    uid = tenant_uid("t", sandbox_settings)
    # The event loop's child watcher reaps asynchronously: allow it a moment.
    for _ in range(40):
        left = await asyncio.to_thread(_leftovers, uid)
        if not left:
            break
        await asyncio.sleep(0.05)
    assert left == []
