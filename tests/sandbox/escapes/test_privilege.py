"""Privilege escapes: ptrace, mount, unshare, signalling host processes, setuid binaries, kernel modules."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest

from shopfloor.config import Settings
from shopfloor.sandbox import Command, tenant_uid

from .conftest import Attack, observed

LIBC = "libc = ctypes.CDLL(None, use_errno=True)\n"


def _syscall_errno(expression: str) -> str:
    return f"(lambda r: {{'ret': r, 'errno': errno.errorcode.get(ctypes.get_errno(), '')}})({expression})"


async def test_ptrace_another_process(attack: Attack) -> None:
    script = (
        LIBC
        + f"""
child = os.fork()
if child == 0:
    time.sleep(30)
    os._exit(0)
PTRACE_ATTACH = 16
report(
    attach={_syscall_errno("libc.ptrace(PTRACE_ATTACH, child, None, None)")},
    helper_mem=attempt(lambda: open('/proc/1/mem', 'rb').read(1)),
    vm_read={_syscall_errno("libc.process_vm_readv(child, None, 0, None, 0, 0)")},
)
"""
    )
    seen = observed(await attack(script, session=True))
    assert seen["attach"] == {"ret": -1, "errno": "EPERM"}
    assert seen["vm_read"] == {"ret": -1, "errno": "EPERM"}
    assert seen["helper_mem"]["errno"] == "EACCES"


async def test_mount(attack: Attack) -> None:
    script = (
        LIBC
        + f"""
os.makedirs('/tmp/m', exist_ok=True)
report(
    tmpfs={_syscall_errno("libc.mount(b'none', b'/tmp/m', b'tmpfs', 0, None)")},
    remount={_syscall_errno("libc.mount(None, b'/usr', None, 32 | 4096, None)")},
)
"""
    )
    seen = observed(await attack(script))
    assert seen["tmpfs"] == {"ret": -1, "errno": "EPERM"}
    assert seen["remount"] == {"ret": -1, "errno": "EPERM"}


async def test_unshare_and_setns(attack: Attack) -> None:
    script = (
        LIBC
        + f"""
report(
    user={_syscall_errno("libc.unshare(0x10000000)")},
    net={_syscall_errno("libc.unshare(0x40000000)")},
    clone_ns={_syscall_errno("libc.syscall(56, 0x10000000 | 17, 0, 0, 0, 0)")},
    clone3={_syscall_errno("libc.syscall(435, None, 0)")},
    setns={_syscall_errno("libc.setns(os.open('/proc/self/ns/net', os.O_RDONLY), 0)")},
)
"""
    )
    seen = observed(await attack(script))
    assert seen["user"] == seen["net"] == {"ret": -1, "errno": "EPERM"}
    assert seen["clone_ns"] == {"ret": -1, "errno": "EPERM"}
    assert seen["clone3"] == {"ret": -1, "errno": "ENOSYS"}
    assert seen["setns"] == {"ret": -1, "errno": "EPERM"}


async def test_kill_a_host_process(attack: Attack, sandbox_settings: Settings) -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root to start a host process as the tenant's uid")
    uid = tenant_uid("attacker", sandbox_settings)
    # The worst case: a host process with the sandbox's own uid.
    victim = await asyncio.create_subprocess_exec("sleep", "30", user=uid, group=uid, extra_groups=[])
    try:
        script = f"""
report(
    direct=attempt(lambda: os.kill({victim.pid}, signal.SIGKILL)),
    host_init=attempt(lambda: os.kill(1, 0) or open('/proc/1/cmdline').read()),
    everyone=attempt(lambda: os.kill(-1, signal.SIGKILL)),
)
"""
        seen = observed(await attack(script, session=True))
        assert seen["direct"]["errno"] == "ESRCH"
        assert "sleep" not in seen["host_init"].get("value", "")
        await asyncio.sleep(0.2)
        assert victim.returncode is None
    finally:
        victim.kill()
        await victim.wait()


async def test_setuid_binaries_do_not_elevate(attack: Attack) -> None:
    script = """
import subprocess
out = {}
for name in ('su', 'mount', 'passwd', 'newgrp'):
    path = '/usr/bin/' + name
    if os.path.exists(path):
        argv = [path, '--help'] if name != 'newgrp' else [path]
        out[name] = subprocess.run(argv, capture_output=True, text=True, input='').returncode
code = 'import os; print(os.geteuid())'
probe = subprocess.run(['/usr/bin/python3', '-c', code], capture_output=True, text=True)
status = open('/proc/self/status').read()
report(
    runs=out,
    euid=os.geteuid(),
    child_euid=int(probe.stdout),
    no_new_privs=status.split('NoNewPrivs:')[1].split()[0],
)
"""
    seen = observed(await attack(script))
    assert seen["euid"] != 0 and seen["child_euid"] == seen["euid"]
    assert seen["no_new_privs"] == "1"
    # newgrp would need setuid root to change group: without privilege it fails.
    if "newgrp" in seen["runs"]:
        assert seen["runs"]["newgrp"] != 0
    su = Path("/usr/bin/su")
    # The host's su is setuid, so the test means something.
    if await asyncio.to_thread(su.exists):
        assert (
            await asyncio.to_thread(su.stat)
        ).st_mode & 0o4000  # the host's su is setuid, so the test means something


async def test_loading_kernel_modules(attack: Attack) -> None:
    script = (
        LIBC
        + f"""
fd = os.open('/usr/bin/true', os.O_RDONLY)
report(
    finit={_syscall_errno("libc.syscall(313, fd, b'', 0)")},
    init={_syscall_errno("libc.syscall(175, None, 0, b'')")},
    delete={_syscall_errno("libc.syscall(176, b'ext4', 0)")},
    modules=attempt(lambda: os.listdir('/lib/modules')),
)
"""
    )
    seen = observed(await attack(script))
    for key in ("finit", "init", "delete"):
        assert seen[key] == {"ret": -1, "errno": "EPERM"}, (key, seen[key])
    assert seen["modules"]["errno"] == "ENOENT"


async def test_commands_cannot_kill_or_read_the_session_helper(
    workspace: Path, sandbox_settings: Settings, bwrap_ready: None
) -> None:
    from shopfloor.sandbox import SandboxPolicy, open_sandbox

    policy = SandboxPolicy(isolation="bwrap", timeout=10)
    async with await open_sandbox(
        policy, workspace=workspace, tenant="attacker", settings=sandbox_settings
    ) as live:
        attack = await live.exec(
            Command(argv=("sh", "-c", "kill -9 1; kill -TERM 1; cat /proc/1/environ; echo done"))
        )
        assert attack.stdout == b"done\n"
        after = await live.exec(Command(argv=("echo", "still serving")))
    assert after.stdout == b"still serving\n"
