"""Costs of the skills layer, each next to a baseline measured in the same run.

- load: ``load_skill(strict=True)`` (front matter + sidecar + manifest hashing) against the
  reference validator ``skills_ref.validator.validate`` on the same directory (front matter only).
- verify: ``open_skill`` (load + Ed25519 verification) against ``load_skill`` alone.
- call: ``SkillTool.call`` of the scaffolded skill (workspace dir, sandbox, JSON in/out, schema
  checks) against ``run_sandboxed`` of the same interpreter command with the same mounts.
- deps: the second ``prepare_environment`` of a skill with a requirements.txt (cached) against
  the first (venv + pip install from PyPI; needs the package index).

Run: ``.venv/bin/python -m benchmarks.bench_skills [--reps N] [--no-deps]``.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from skills_ref.validator import validate

from shopfloor.config import load_settings
from shopfloor.sandbox import Command, ExecRequest, Mount, SandboxPolicy, python_runtime, run_sandboxed
from shopfloor.skills import (
    SkillTool,
    TrustPolicy,
    generate_key,
    load_skill,
    new_skill,
    open_skill,
    prepare_environment,
    sign_skill,
)
from shopfloor.tools import ToolContext


def timed(fn: Callable[[], Any], reps: int) -> float:
    samples = []
    for _ in range(reps):
        start = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - start)
    return statistics.median(samples)


async def atimed(fn: Callable[[], Awaitable[Any]], reps: int) -> float:
    samples = []
    for _ in range(reps):
        start = time.perf_counter()
        await fn()
        samples.append(time.perf_counter() - start)
    return statistics.median(samples)


def line(what: str, value: float, baseline: float, base_name: str) -> None:
    print(
        f"{what:<8} {value * 1000:9.2f} ms   baseline ({base_name}) {baseline * 1000:9.2f} ms"
        f"   ratio {value / baseline:6.2f}"
    )


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--reps", type=int, default=20)
    parser.add_argument("--no-deps", action="store_true", help="skip the dependency install measurement")
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="bench-skills-"))
    settings = load_settings({"SHOPFLOOR_HOME": str(root / "home")})
    skill_dir = new_skill("bench", root / "skills")
    key = generate_key("bench", settings.home / "keys")
    sign_skill(skill_dir, key.private_path)
    policy = TrustPolicy.from_settings(settings)

    reference = timed(lambda: validate(skill_dir), args.reps)
    line("load", timed(lambda: load_skill(skill_dir), args.reps), reference, "skills-ref validate")
    loaded = timed(lambda: load_skill(skill_dir), args.reps)
    line("verify", timed(lambda: open_skill(skill_dir, policy), args.reps), loaded, "load_skill")

    workspace = root / "ws"
    tool = SkillTool(load_skill(skill_dir), settings=settings, tenant="bench", workspace=workspace)
    ctx = ToolContext(run_id="b", step=0, call_id="b", idempotency_key="b")
    runtime = python_runtime()
    mounts = [Mount(host_path=skill_dir, sandbox_path="/skill"), *runtime.mounts]

    async def direct() -> Any:
        return await run_sandboxed(
            ExecRequest(
                policy=SandboxPolicy(),
                command=Command(
                    argv=(runtime.executable, "-B", "/skill/scripts/run.py"), stdin=b'{"text": "x"}'
                ),
                workspace=workspace,
                tenant="bench",
                mounts=tuple(mounts),
            ),
            settings=settings,
        )

    await tool.call({"text": "x"}, ctx)  # warm: launcher build, cgroup
    await direct()
    # Alternate the two so that machine load hits both alike.
    ours, theirs = [], []
    for _ in range(args.reps):
        theirs.append(await atimed(direct, 1))
        ours.append(await atimed(lambda: tool.call({"text": "x"}, ctx), 1))
    line("call", statistics.median(ours), statistics.median(theirs), "run_sandboxed")

    if not args.no_deps:
        (skill_dir / "requirements.txt").write_text("six==1.16.0\n")
        sidecar = skill_dir / "shopfloor.yaml"
        sidecar.write_text(sidecar.read_text() + "dependencies:\n  python: requirements.txt\n")
        with_deps = load_skill(skill_dir)
        start = time.perf_counter()
        await prepare_environment(with_deps, settings)
        first = time.perf_counter() - start
        cached = await atimed(lambda: prepare_environment(with_deps, settings), args.reps)
        line("deps", cached, first, "first install")


if __name__ == "__main__":
    asyncio.run(main())
