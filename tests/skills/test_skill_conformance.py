"""Strict mode agrees with the Agent Skills reference validator (``agentskills validate``) on a corpus."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from shopfloor.errors import SkillFormatError
from shopfloor.skills import load_skill

CORPUS = Path(__file__).parent / "fixtures" / "conformance"
CASES = sorted(p.name for p in CORPUS.iterdir())
AGENTSKILLS = shutil.which("agentskills") or str(Path(sys.executable).parent / "agentskills")

# Bad fixtures that only break a limit or a StrictYAML restriction: compatibility mode loads them.
COMPAT_LOADS = {
    "bad-anchor": "strict-yaml",
    "bad-compatibility-501": "compatibility-length",
    "bad-compatibility-not-string": "compatibility-string",
    "bad-description-1068": "description-length",
    "bad-duplicate-key": "strict-yaml",
    "bad-flow-mapping": "strict-yaml",
    "bad-flow-sequence": "strict-yaml",
    "bad-name-65": "name-length",
    "bad-name-consecutive-hyphens": "name-consecutive-hyphens",
    "bad-name-dir-mismatch": "name-matches-directory",
    "bad-name-leading-hyphen": "name-hyphen-ends",
    "bad-name-trailing-hyphen": "name-hyphen-ends",
    "bad-name-underscore": "name-characters",
    "bad-name-uppercase": "name-lowercase",
    "bad-tag": "strict-yaml",
    "bad-unexpected-field": "unexpected-field",
}


def _skill(case: str) -> Path:
    (skill,) = (CORPUS / case).iterdir()
    return skill


def _reference_accepts(skill: Path) -> bool:
    result = subprocess.run([AGENTSKILLS, "validate", str(skill)], capture_output=True, text=True, timeout=60)
    assert result.returncode in (0, 1), result.stderr
    return result.returncode == 0


def _strict_accepts(skill: Path) -> bool:
    try:
        load_skill(skill, strict=True)
    except SkillFormatError:
        return False
    return True


def test_corpus_covers_every_rule() -> None:
    assert len(CASES) >= 30
    assert sum(c.startswith("good-") for c in CASES) >= 10


@pytest.mark.parametrize("case", CASES)
def test_strict_mode_agrees_with_reference_validator(case: str) -> None:
    skill = _skill(case)
    reference = _reference_accepts(skill)
    assert reference == case.startswith("good-"), f"fixture {case} is mislabelled: reference says {reference}"
    assert _strict_accepts(skill) == reference


@pytest.mark.parametrize("case", [c for c in CASES if c.startswith("bad-")])
def test_compatibility_mode_loads_limit_breakers_with_a_named_rule(case: str) -> None:
    skill = _skill(case)
    if case in COMPAT_LOADS:
        loaded = load_skill(skill, strict=False)
        assert COMPAT_LOADS[case] in {w.rule for w in loaded.warnings}
    else:
        with pytest.raises(SkillFormatError):
            load_skill(skill, strict=False)
