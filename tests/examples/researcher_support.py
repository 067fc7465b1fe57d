"""The researcher example as tests run it: a copy whose ``sources`` (the installed python3.11-doc, many
minutes to embed on two cores) point where nothing is, so that it falls back to the seven tutorial
pages it ships (``corpus/tutorial/``, the pages the gold ids of its evaluation name)."""

from __future__ import annotations

import shutil
from pathlib import Path

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "researcher"
INSTALLED = "sources: [/usr/share/doc/python3.11/html]"


def researcher_on_fallback(tmp_path: Path) -> Path:
    """A copy of the researcher in ``tmp_path`` that ingests only its shipped pages."""
    agent = tmp_path / "researcher"
    shutil.copytree(EXAMPLE, agent)
    spec = agent / "agent.yaml"
    text = spec.read_text()
    assert INSTALLED in text and "fallback: [corpus]" in text
    spec.write_text(text.replace(INSTALLED, f"sources: [{tmp_path / 'python3.11-doc-not-installed'}]"))
    return agent
