"""``shopfloor doctor`` reports the skills' trust policy and runtimes."""

from __future__ import annotations

from shopfloor.config import Settings
from shopfloor.skills._doctor import check_skill_runtimes, check_skills


def test_doctor_lines(settings: Settings) -> None:
    skills = check_skills(settings)
    assert skills.status == "ok"
    assert set(skills.data["builtin"]) == {"data-analysis", "python"}
    assert "signatures required, strict mode" in skills.detail
    assert check_skill_runtimes(settings).data["python"] is True
