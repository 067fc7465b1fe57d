"""Resource escapes: memory and fork bombs, CPU spin, disk fill, output flood, unkillable children."""

from __future__ import annotations

import asyncio
from pathlib import Path

from shopfloor.sandbox import SandboxPolicy
from shopfloor.sandbox._host import host_cgroups

from .conftest import Attack, observed


async def test_memory_bomb(attack: Attack) -> None:
    policy = SandboxPolicy(isolation="bwrap", memory=64 << 20, timeout=20)
    script = "hog = []\nwhile True:\n    hog.append(bytearray(8 << 20))\n"
    for session in (False, True):
        result = await attack(script, policy=policy, session=session)
        assert result.killed_by == "memory" and result.exit_code == 137, result
        assert result.peak_memory <= (64 << 20) + (1 << 20)
    # A single huge allocation is refused by RLIMIT_AS before it is touched.
    seen = observed(
        await attack(
            "try:\n    bytearray(4 << 30)\n    report(r='allocated')\n"
            "except MemoryError:\n    report(r='MemoryError')",
            policy=policy,
        )
    )
    assert seen["r"] == "MemoryError"


async def test_fork_bomb(attack: Attack) -> None:
    policy = SandboxPolicy(isolation="bwrap", pids=24, timeout=20)
    script = "while True:\n    try:\n        os.fork()\n    except OSError:\n        time.sleep(0.01)\n"
    cgroups = host_cgroups()

    # Only this test's groups: other sandboxes on the host (other test runs) come and go meanwhile.
    def mine() -> set[Path]:
        return {g for g in cgroups.groups() if g.name.startswith("attacker-")} if cgroups else set()

    before = mine()
    for session in (False, True):
        result = await attack(script, policy=policy, session=session)
        assert result.killed_by == "pids", result
        assert result.wall_time < 10
    if cgroups is not None:
        # Every process is gone and the groups are removed.
        assert mine() == before


async def test_cpu_spin_is_throttled_and_timed_out(attack: Attack) -> None:
    policy = SandboxPolicy(isolation="bwrap", cpus=0.2, timeout=1.5)
    result = await attack("while True:\n    pass\n", policy=policy)
    assert result.killed_by == "timeout" and 1.5 <= result.wall_time < 4
    # 0.2 of a core over ~1.5 s: far below the wall time (an unthrottled spin would use all of it).
    assert 0 < result.cpu_time < 0.6 * result.wall_time


async def test_disk_fill_past_the_quota(attack: Attack, workspace: Path) -> None:
    policy = SandboxPolicy(isolation="bwrap", disk=8 << 20, timeout=20)
    script = """
def fill(path):
    with open(path, 'wb') as f:
        for _ in range(64):
            f.write(b'x' * (1 << 20))
report(workspace=attempt(lambda: fill('/workspace/big')), tmp=attempt(lambda: fill('/tmp/big')))
"""
    seen = observed(await attack(script, policy=policy))
    assert seen["workspace"]["errno"] == "EFBIG"
    assert seen["tmp"]["errno"] in ("ENOSPC", "EFBIG")
    size = (await asyncio.to_thread((workspace / "big").stat)).st_size
    assert size <= 8 << 20


async def test_output_flood(attack: Attack) -> None:
    policy = SandboxPolicy(isolation="bwrap", max_output=64 << 10, timeout=20)
    result = await attack("import sys\nwhile True:\n    sys.stdout.write('A' * 65536)\n", policy=policy)
    assert result.killed_by == "output" and result.stdout_truncated
    assert len(result.stdout) == 64 << 10 and result.wall_time < 5


async def test_children_that_ignore_sigterm_outlive_nothing(attack: Attack, workspace: Path) -> None:
    script = """
signal.signal(signal.SIGTERM, signal.SIG_IGN)
for _ in range(3):
    if os.fork() == 0:
        os.setsid()
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        time.sleep(2)
        open(f'/workspace/alive-{os.getpid()}', 'w').write('x')
        os._exit(0)
time.sleep(60)
"""
    for session in (False, True):
        result = await attack(script, timeout=0.5, session=session)
        assert result.killed_by == "timeout"
    await asyncio.sleep(2.5)
    assert await asyncio.to_thread(lambda: list(workspace.glob("alive-*"))) == []


async def test_total_disk_and_files_of_the_writable_area(
    attack: Attack, any_isolation: str, workspace: Path
) -> None:
    # --disk 8M: 30 files of 7 MiB each were 210 MiB on the host disk when only each file was bounded.
    policy = SandboxPolicy(isolation=any_isolation, disk=8 << 20, files=256, timeout=60)  # type: ignore[arg-type]
    script = """
def write(path, size):
    with open(path, 'wb') as f:
        f.write(b'x' * size)
big = [attempt(lambda: write(f'big-{i}', 7 << 20)) for i in range(30)]
tmp = attempt(lambda: write(os.path.join(os.environ['TMPDIR'], 'more'), 2 << 20))
tiny, error = 0, None
try:
    for i in range(20000):
        open(f'tiny-{i}', 'w').close()
        tiny += 1
except OSError as exc:
    error = errno.errorcode[exc.errno]
report(big=sum(1 for b in big if b['ok']), big_errors=sorted({b.get('errno', 'ok') for b in big}), tmp=tmp,
       tiny=tiny, tiny_error=error)
"""
    seen = observed(await attack(script, policy=policy))
    assert seen["big"] == 1 and seen["big_errors"] == ["ENOSPC", "ok"], seen
    assert seen["tmp"]["errno"] == "ENOSPC"  # /tmp shares the one budget
    assert seen["tiny"] < 256 and seen["tiny_error"] == "ENOSPC", seen

    def usage() -> tuple[int, int]:
        files = [p for p in workspace.rglob("*")]
        return sum(p.stat().st_size for p in files if p.is_file()), len(files)

    total, count = await asyncio.to_thread(usage)
    assert total <= 8 << 20 and count <= 256, (total, count)
    # What fit was applied to the workspace on the host.
    assert (await asyncio.to_thread((workspace / "big-0").stat)).st_size == 7 << 20
