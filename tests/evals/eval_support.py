"""Helpers of the evaluation tests: a scripted agent with a named, seeded workspace, and a suite over it."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

HERE = Path(__file__).parent

AGENT = """\
name: evaluated
instructions: Mark, then answer.
model: function:eval_agent:script
decision: one_shot
tools:
  - name: mark
    source: eval_agent.py:mark
workspace:
  name: shared
  seed: [seed.txt]
limits:
  max_steps: 4
"""


class AgentDir:
    def __init__(self, path: Path) -> None:
        self.path = path

    def calls(self) -> Counter[str]:
        log = self.path / "calls.log"
        return Counter(log.read_text().split()) if log.exists() else Counter()


def write_suite(folder: Path, agent: Path, items: list[str], *, extra: str = "", scorers: str = "") -> Path:
    """A suite over ``items`` (JSONL lines) with a contains scorer and a trajectory scorer."""
    (folder / "items.jsonl").write_text("\n".join(items) + "\n")
    suite = folder / "suite.yaml"
    suite.write_text(
        f"name: smoke\nagent: {agent}\ndataset: items.jsonl\n"
        "scorers:\n  - {type: contains}\n  - {type: trajectory, tools: [mark]}\n" + scorers + extra
    )
    return suite
