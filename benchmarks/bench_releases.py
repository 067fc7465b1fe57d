"""What a deployment adds to starting a run by name (target: well under 10 ms on SQLite).

Routed: ``DeploymentRouter`` (the deployment and release rows, the signature and pins checked, the
materialised directory found) plus loading the spec it names, as ``Runtime.start_run(agent=NAME)`` does.
Baseline, measured in the same run: loading the spec by its path, what ``start_run(PATH)`` does anyway.
Medians of interleaved repeats. Run: ``.venv/bin/python -m benchmarks.bench_releases``.
"""

from __future__ import annotations

import os
import statistics
import tempfile
import time
from pathlib import Path

from shopfloor.config import load_settings
from shopfloor.ops.releases import DeploymentRouter, Deployments, Releases
from shopfloor.runtime import Services, compose
from shopfloor.skills import generate_key

CALLS = 50
REPEATS = 7


def _agent(root: Path) -> Path:
    path = root / "bench"
    path.mkdir()
    (path / "agent.yaml").write_text(
        "name: bench\ninstructions: hi\nmodel: test\ntools:\n  - name: f\n    source: tools.py:f\n"
    )
    (path / "tools.py").write_text('def f(x: int) -> int:\n    """Echo."""\n    return x\n')
    return path


def _routed(services: Services, router: DeploymentRouter) -> float:
    start = time.perf_counter()
    for n in range(CALLS):
        routed = router(services, "bench", f"caller-{n}")
        assert routed is not None
        services.load_spec(routed.spec_path)
    return (time.perf_counter() - start) / CALLS


def _baseline(services: Services, path: Path) -> float:
    start = time.perf_counter()
    for _ in range(CALLS):
        services.load_spec(path)
    return (time.perf_counter() - start) / CALLS


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["SHOPFLOOR_HOME"] = str(Path(tmp) / "home")
        services = compose(load_settings())
        try:
            key = generate_key("bench", services.settings.home / "keys").private_path
            path = _agent(Path(tmp))
            with Releases(services) as releases:
                releases.create(path, key=key, actor="bench", version="1.0.0")
                (path / "tools.py").write_text((path / "tools.py").read_text() + "# 2\n")
                releases.create(path, key=key, actor="bench", version="2.0.0")
                deployments = Deployments(releases)
                deployments.deploy("bench@1.0.0", actor="bench")
                deployments.deploy("bench@2.0.0", actor="bench", canary=10)
            routed, baseline = [], []
            router = DeploymentRouter()
            for _ in range(REPEATS):
                baseline.append(_baseline(services, path))
                routed.append(_routed(services, router))
        finally:
            services.close()
    b, r = statistics.median(baseline) * 1000, statistics.median(routed) * 1000
    print(f"load spec by path (baseline): {b:.3f} ms")
    print(f"route by deployment + load:   {r:.3f} ms  ({r / b:.2f}x, +{r - b:.3f} ms a run start)")


if __name__ == "__main__":
    main()
