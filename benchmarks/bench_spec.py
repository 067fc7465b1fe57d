"""Cost of loading an agent spec with positions, located errors and a digest.

Baseline, measured in the same run: a safe YAML load (libyaml when present, as the
loader uses) + ``AgentSpec.model_validate``
(what a loader without file:line errors and without a digest would do).
Run: ``.venv/bin/python -m benchmarks.bench_spec``.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import yaml

from shopfloor.errors import SpecError
from shopfloor.spec import AgentSpec, load_spec, spec_resolvers

SPEC = """
name: bench
version: 1.0.0
description: An agent with a few of everything.
instructions: |
  Answer with tools.
model: local:qwen2.5-coder-0.5b
tools:
  - {name: calculator, source: "builtin:calculator"}
  - {name: convert, source: "tools.py:convert", description: Convert units.}
skills: [pdf@2.1.0]
limits: {max_steps: 8, max_tokens: 8000, wall_time: 120, step_timeout: 30}
sandbox: {isolation: auto, network: [pypi.org], memory: 512M, cpus: 1, pids: 64}
workspace: {seed: [data]}
"""
LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
BAD = "name: Bench\nlimits: {max_steps: 0, wall_tme: 3}\nsandbox: {network: x}\ntools: [{name: t}]\n"


def median_ms(function: Callable[[], object], repeat: int = 300) -> float:
    for _ in range(20):
        function()
    samples = []
    for _ in range(repeat):
        start = time.perf_counter()
        function()
        samples.append(time.perf_counter() - start)
    return statistics.median(samples) * 1000


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        resolvers = spec_resolvers()
        (root / "agent.yaml").write_text(SPEC)
        (root / "tools.py").write_text("def convert(x: float) -> float:\n    return x\n")
        (root / "data").mkdir()
        for index in range(20):
            (root / "data" / f"{index}.csv").write_text("a,b\n" * 200)
        bad = root / "bad" / "agent.yaml"
        bad.parent.mkdir()
        bad.write_text(BAD)

        def baseline() -> object:
            text = (root / "agent.yaml").read_text()
            return AgentSpec.model_validate(yaml.load(text, Loader=LOADER))

        def failing() -> None:
            try:
                load_spec(bad, resolvers=resolvers)
            except SpecError:
                return
            raise AssertionError("the bad spec loaded")

        base = median_ms(baseline)
        full = median_ms(lambda: load_spec(root, resolvers=resolvers))
        errors = median_ms(failing)
    print(f"baseline safe YAML load + model_validate:  {base:.3f} ms")
    print(f"load_spec (positions + digest of 22 files): {full:.3f} ms  ratio {full / base:.2f}x")
    print(f"load_spec of a spec with 5 problems:        {errors:.3f} ms  ratio {errors / base:.2f}x")


if __name__ == "__main__":
    main()
