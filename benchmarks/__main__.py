"""Run every benchmark, one after the other: ``python -m benchmarks [NAME ...]``.

Each prints its measurements next to a baseline measured in the same run, with the ratio.
Names: spec, agent, models, workspace, sandbox, skills, runtime, telemetry, evals, governance, gateway,
gateway_tail, releases, retrieval, doc_stores, doc_ingests, vec_store, research, retrieval_quality,
children, console
(default: all).
"""

from __future__ import annotations

import runpy
import sys

ALL = (
    "spec",
    "agent",
    "models",
    "workspace",
    "sandbox",
    "skills",
    "runtime",
    "telemetry",
    "evals",
    "governance",
    "gateway",
    "gateway_tail",
    "releases",
    "retrieval",
    "doc_stores",
    "doc_ingests",
    "vec_store",
    "research",
    "retrieval_quality",
    "children",
    "console",
)


def main(names: list[str]) -> int:
    unknown = [n for n in names if n not in ALL]
    if unknown:
        print(f"unknown benchmark(s): {', '.join(unknown)}; choose from {', '.join(ALL)}", file=sys.stderr)
        return 2
    for name in names or ALL:
        print(f"\n=== benchmarks.bench_{name} ===", flush=True)
        saved = sys.argv
        sys.argv = [f"bench_{name}"]
        try:
            runpy.run_module(f"benchmarks.bench_{name}", run_name="__main__")
        except SystemExit as exc:
            if exc.code not in (0, None):
                return int(exc.code) if isinstance(exc.code, int) else 1
        finally:
            sys.argv = saved
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
