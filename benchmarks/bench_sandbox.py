"""Per-exec overhead of the sandbox against a bare ``python3 -c pass`` measured in the same run.

    .venv/bin/python -m benchmarks.bench_sandbox [--runs N]

Targets (issue 7): a cold sandboxed exec with every layer on (bwrap + seccomp + cgroup + rlimits +
tenant uid) at p50 <= 3x bare; an exec inside an open session at p50 <= 2x bare. Bare, cold and session
runs are interleaved so that load from other processes affects all three alike.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from pathlib import Path

from shopfloor.config import load_settings
from shopfloor.sandbox import (
    Command,
    ExecRequest,
    SandboxPolicy,
    open_sandbox,
    probe_capabilities,
    run_sandboxed,
)

ARGV = ["/usr/bin/python3", "-c", "pass"]


async def _bare() -> float:
    start = time.perf_counter()
    process = await asyncio.create_subprocess_exec(
        *ARGV, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    await process.communicate()
    return time.perf_counter() - start


def _line(name: str, samples: list[float], bare: float) -> str:
    p50 = statistics.median(samples)
    p90 = sorted(samples)[int(len(samples) * 0.9) - 1]
    return f"{name:34} p50 {p50 * 1000:7.1f} ms  p90 {p90 * 1000:7.1f} ms  ratio {p50 / bare:5.2f}x"


async def main(runs: int, gvisor_runs: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        settings = load_settings({"SHOPFLOOR_HOME": str(Path(tmp) / "home")})
        workspace = Path(tmp) / "ws"
        policy = SandboxPolicy(isolation="bwrap", memory=512 << 20, timeout=30)
        caps = probe_capabilities()
        seccomp = "on" if caps.seccomp is None else caps.seccomp
        print(f"layers: cgroup={caps.cgroup}, seccomp={seccomp}, root={caps.root}")
        # Warm-up: compiles the launcher once, fills the page cache.
        await run_sandboxed(
            ExecRequest(
                policy=policy, command=Command(argv=tuple(ARGV)), workspace=workspace, tenant="bench"
            ),
            settings=settings,
        )
        bare: list[float] = []
        cold: list[float] = []
        warm: list[float] = []
        async with await open_sandbox(
            policy, workspace=workspace, tenant="bench", settings=settings
        ) as session:
            await session.exec(Command(argv=tuple(ARGV)))
            for _ in range(runs):
                bare.append(await _bare())
                start = time.perf_counter()
                result = await run_sandboxed(
                    ExecRequest(
                        policy=policy, command=Command(argv=tuple(ARGV)), workspace=workspace, tenant="bench"
                    ),
                    settings=settings,
                )
                cold.append(time.perf_counter() - start)
                assert result.exit_code == 0, result
                start = time.perf_counter()
                result = await session.exec(Command(argv=tuple(ARGV)))
                warm.append(time.perf_counter() - start)
                assert result.exit_code == 0, result
        base = statistics.median(bare)
        print(_line("bare python3 -c pass (baseline)", bare, base))
        print(_line("cold exec, every layer (target 3x)", cold, base))
        print(_line("exec in open session (target 2x)", warm, base))
        if gvisor_runs and caps.runsc:
            gvisor = SandboxPolicy(isolation="gvisor", memory=512 << 20, timeout=60)
            samples = []
            for _ in range(gvisor_runs):
                start = time.perf_counter()
                result = await run_sandboxed(
                    ExecRequest(
                        policy=gvisor, command=Command(argv=tuple(ARGV)), workspace=workspace, tenant="bench"
                    ),
                    settings=settings,
                )
                samples.append(time.perf_counter() - start)
                assert result.exit_code == 0, result
            print(_line("gvisor (runsc) cold exec", samples, base))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=40)
    parser.add_argument("--gvisor-runs", type=int, default=0)
    args = parser.parse_args()
    asyncio.run(main(args.runs, args.gvisor_runs))
