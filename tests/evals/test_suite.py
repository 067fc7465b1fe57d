"""Suites: the issue's shape loads; every mistake is reported with file:line, all at once."""

from __future__ import annotations

from pathlib import Path

import pytest

from shopfloor.config import Settings
from shopfloor.errors import SpecError
from shopfloor.evals import ScorerEnv, build_scorers, load_suite

ISSUE_SHAPE = """\
name: analyst-smoke
agent: ../examples/analyst
dataset: questions.jsonl          # {"id": "q1", "input": "...", "expected": 284.5, "tags": ["single"]}
repeat: 1
scorers:
  - {type: numeric, tolerance: 0.01}
  - {type: trajectory, tools: [data-analysis]}
gates:
  - {metric: numeric, min: 0.8}
"""


def test_the_issue_shape_loads(tmp_path: Path, settings: Settings) -> None:
    (tmp_path / "suite.yaml").write_text(ISSUE_SHAPE)
    env = ScorerEnv(base_dir=tmp_path, settings=settings)
    suite, _ = load_suite(tmp_path / "suite.yaml", env)
    assert suite.spec.name == "analyst-smoke" and suite.spec.repeat == 1
    assert suite.datasets() == [(tmp_path / "questions.jsonl").resolve()]
    assert suite.agent_path() == (tmp_path / "../examples/analyst").resolve()
    scorers = build_scorers(suite.scorer_configs, env)
    assert [s.name for s in scorers] == ["numeric", "trajectory"], "a metric is named after its scorer's type"
    assert suite.spec.gates[0].metric == "numeric" and suite.spec.gates[0].min == 0.8
    assert suite.digest.startswith("sha256:")


def test_every_mistake_is_reported_with_its_line(tmp_path: Path, settings: Settings) -> None:
    (tmp_path / "suite.yaml").write_text(
        "name: s\ndataset: d.jsonl\nscorers:\n  - {type: numeric, tolerence: 0.01}\n  - {type: nope}\n"
        "  - {type: regex, pattern: '(a'}\n"
    )
    with pytest.raises(SpecError) as caught:
        load_suite(tmp_path / "suite.yaml", ScorerEnv(base_dir=tmp_path, settings=settings))
    text = str(caught.value)
    assert "suite.yaml:4:" in text and "tolerence" in text and "unknown option of scorer 'numeric'" in text
    assert "suite.yaml:5:" in text and "unknown scorer type 'nope'" in text
    assert "suite.yaml:6:" in text and "RE2" in text


def test_a_typo_at_the_top_level_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "suite.yaml").write_text("name: s\ndataset: d.jsonl\nrepeats: 3\nscorers: [{type: exact}]\n")
    with pytest.raises(SpecError, match=r"suite.yaml:3:1.*repeats"):
        load_suite(tmp_path / "suite.yaml")


def test_two_scorers_of_one_metric_need_a_name(tmp_path: Path, settings: Settings) -> None:
    (tmp_path / "suite.yaml").write_text(
        "name: s\ndataset: d.jsonl\nscorers: [{type: exact}, {type: exact}]\n"
    )
    with pytest.raises(SpecError, match="two scorers make the metric 'exact'"):
        load_suite(tmp_path / "suite.yaml", ScorerEnv(base_dir=tmp_path, settings=settings))
