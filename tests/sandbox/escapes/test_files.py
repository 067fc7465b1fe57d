"""File-system escapes: host secrets, other tenants, writes outside the workspace, links, /dev."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest

from shopfloor.config import Settings
from shopfloor.sandbox import Command, ExecRequest, SandboxPolicy, run_sandboxed, tenant_uid

from .conftest import Attack, observed


async def test_etc_shadow_is_not_there(attack: Attack) -> None:
    seen = observed(
        await attack("report(shadow=attempt(lambda: open('/etc/shadow').read()), etc=os.listdir('/etc'))")
    )
    assert seen["shadow"]["errno"] == "ENOENT"
    assert "shadow" not in seen["etc"] and "passwd" in seen["etc"]


async def test_host_home_is_not_there(attack: Attack) -> None:
    home = Path.home()
    script = (
        f"report(home=attempt(lambda: os.listdir({str(home)!r})),"
        f" bashrc=attempt(lambda: open({str(home / '.bashrc')!r}).read()))"
    )
    seen = observed(await attack(script))
    assert seen["home"]["errno"] == "ENOENT" and seen["bashrc"]["errno"] == "ENOENT"


async def test_other_tenants_workspace(tmp_path: Path, attack: Attack, sandbox_settings: Settings) -> None:
    victim = tmp_path / "victim-ws"
    victim.mkdir()
    (victim / "secret.txt").write_text("victim data")
    # The victim ran once: its workspace now belongs to its uid, mode 0700.
    policy = SandboxPolicy(isolation="bwrap", timeout=10)
    await run_sandboxed(
        ExecRequest(policy=policy, command=Command(argv=("true",)), workspace=victim, tenant="victim"),
        settings=sandbox_settings,
    )
    script = f"report(read=attempt(lambda: open({str(victim / 'secret.txt')!r}).read()), uid=os.getuid())"
    seen = observed(await attack(script))
    assert seen["read"]["errno"] == "ENOENT"
    stat = await asyncio.to_thread(victim.stat)
    assert stat.st_uid == tenant_uid("victim", sandbox_settings) != seen["uid"]
    assert stat.st_mode & 0o777 == 0o700


async def test_proc_1_environ_and_parent_secrets(attack: Attack, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SHOPFLOOR_TEST_SECRET", "hunter2-do-not-leak")
    script = """
found = []
for pid in [p for p in os.listdir('/proc') if p.isdigit()]:
    try:
        if b'hunter2' in open(f'/proc/{pid}/environ', 'rb').read():
            found.append(pid)
    except OSError:
        pass
report(
    found=found,
    env='hunter2' in repr(dict(os.environ)),
    init=attempt(lambda: open('/proc/1/environ','rb').read()),
)
"""
    for session in (False, True):
        seen = observed(await attack(script, session=session))
        assert seen["found"] == [] and seen["env"] is False
        assert "hunter2" not in seen["init"].get("value", "")


async def test_writes_outside_workspace_are_read_only(attack: Attack) -> None:
    script = """
paths = ['/x', '/usr/x', '/etc/x', '/usr/bin/python3']
results = {p: attempt(lambda p=p: open(p, 'w').write('x')) for p in paths}
results['/workspace/ok'] = attempt(lambda: open('/workspace/ok', 'w').write('x'))
results['/tmp/ok'] = attempt(lambda: open('/tmp/ok', 'w').write('x'))
report(**results)
"""
    seen = observed(await attack(script))
    for path in ("/x", "/usr/x", "/etc/x", "/usr/bin/python3"):
        assert seen[path]["errno"] == "EROFS", (path, seen[path])
    assert seen["/workspace/ok"]["ok"] and seen["/tmp/ok"]["ok"]
    assert not await asyncio.to_thread(Path("/usr/x").exists)


async def test_symlink_escape(attack: Attack, workspace: Path, sandbox_settings: Settings) -> None:
    target = Path("/etc/hostname")
    before = await asyncio.to_thread(target.stat)
    script = """
os.symlink('/etc/hostname', '/workspace/evil')
os.symlink('../../../../../../root', '/workspace/up')
report(read=attempt(lambda: open('/workspace/evil').read()), up=attempt(lambda: os.listdir('/workspace/up')))
"""
    seen = observed(await attack(script))
    # Inside, the links resolve in the sandbox's own tree: no host /etc/hostname, no /root.
    assert seen["read"]["errno"] == "ENOENT" and seen["up"]["errno"] == "ENOENT"
    # The next sandbox chowns the workspace to the tenant: the links must not hand it the host's files.
    await run_sandboxed(
        ExecRequest(
            policy=SandboxPolicy(isolation="bwrap"),
            command=Command(argv=("true",)),
            workspace=workspace,
            tenant="attacker",
        ),
        settings=sandbox_settings,
    )
    after = await asyncio.to_thread(target.stat)
    assert (after.st_uid, after.st_gid, after.st_mode) == (before.st_uid, before.st_gid, before.st_mode)
    assert os.readlink(workspace / "evil") == "/etc/hostname"


async def test_hard_link_escape(attack: Attack) -> None:
    script = """
report(
    python=attempt(lambda: os.link('/usr/bin/python3', '/workspace/py')),
    passwd=attempt(lambda: os.link('/etc/passwd', '/workspace/pw')),
)
"""
    seen = observed(await attack(script))
    assert seen["python"]["errno"] in ("EXDEV", "EPERM") and seen["passwd"]["errno"] in ("EXDEV", "EPERM")


async def test_dev_has_only_harmless_nodes(attack: Attack) -> None:
    script = """
report(
    dev=sorted(os.listdir('/dev')),
    mem=attempt(lambda: open('/dev/mem', 'rb')),
    kmsg=attempt(lambda: open('/dev/kmsg', 'rb')),
    mknod=attempt(lambda: os.mknod('/tmp/sda', 0o600 | 0o060000, os.makedev(8, 0))),
    null=attempt(lambda: open('/dev/null', 'w').write('x')),
)
"""
    seen = observed(await attack(script))
    assert not [d for d in seen["dev"] if d.startswith(("sd", "nvme", "vd", "xvd", "mem", "kmsg", "port"))]
    assert seen["mem"]["errno"] == "ENOENT" and seen["kmsg"]["errno"] == "ENOENT"
    assert seen["mknod"]["errno"] == "EPERM"
    assert seen["null"]["ok"]
