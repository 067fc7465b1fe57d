"""Running an example's evaluation suite over a few of its items, with a scripted model."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from shopfloor.config import load_settings
from shopfloor.evals import EvalItemRow, EvalOptions, EvalRecord, Harness, load_suite
from shopfloor.runtime import compose


def by_id(lines: list[str]) -> dict[str, str]:
    """JSONL dataset lines by their item's id."""
    return {json.loads(line)["id"]: line for line in lines if line.strip()}


def shipped_researcher(example: Path, tmp_path: Path) -> Path:
    """A copy in ``tmp_path`` of the researcher at ``example`` that reads the seven pages it ships: its
    ``sources`` (the installed python3.11-doc, hundreds of pages, many minutes to embed) point where
    nothing is, so it takes its ``fallback``."""
    agent = tmp_path / "researcher"
    shutil.copytree(example, agent)
    spec = agent / "agent.yaml"
    text = spec.read_text()
    installed = "sources: [/usr/share/doc/python3.11/html]"
    assert installed in text and "fallback: [corpus]" in text
    spec.write_text(text.replace(installed, f"sources: [{tmp_path / 'python3.11-doc-not-installed'}]"))
    return agent


def subset_suite(suite_path: Path, tmp_path: Path, lines: list[str], *, agent: Path | None = None) -> Path:
    """A copy in ``tmp_path`` of the suite at ``suite_path`` (its agent ``..`` unless ``agent`` is given, its
    dataset ``questions.jsonl`` and its ``scoring.py`` beside it) with ``lines`` (JSONL items) for its
    dataset."""
    (tmp_path / "some.jsonl").write_text("".join(line + "\n" for line in lines))
    text = suite_path.read_text().replace("agent: ..", f"agent: {agent or suite_path.parents[1]}")
    (tmp_path / "suite.yaml").write_text(text.replace("dataset: questions.jsonl", "dataset: some.jsonl"))
    (tmp_path / "scoring.py").write_text((suite_path.parent / "scoring.py").read_text())
    return tmp_path / "suite.yaml"


async def run_suite(suite_path: Path, *, model: str) -> tuple[EvalRecord, dict[str, EvalItemRow]]:
    """The evaluation of the suite at ``suite_path`` with ``model``, two items at a time: its record and
    its rows by item id."""
    harness = Harness(compose(load_settings()))
    try:
        suite, _ = load_suite(suite_path, harness.env(suite_path.parent))
        record = await harness.run(suite, EvalOptions(model=model, concurrency=2))
        return record, {r.item_id: r for r in harness.store.items(record.eval_id)}
    finally:
        harness.close()
