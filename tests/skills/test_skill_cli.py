"""``shopfloor skill ...`` end to end through the real command line app."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from shopfloor.cli import app
from shopfloor.errors import SkillFormatError

runner = CliRunner()


def _run(*args: str) -> tuple[int, str]:
    result = runner.invoke(app, list(args))
    return result.exit_code, result.output


def _json(*args: str) -> object:
    code, output = _run(*args, "--json")
    assert code == 0, output
    return json.loads(output)


def test_new_keygen_sign_verify_publish_ls_show(tmp_path: Path) -> None:
    created = _json("skill", "new", "report-maker", "--dir", str(tmp_path))
    skill = Path(created["path"])  # type: ignore[index]
    assert _json("skill", "keygen")["name"] == "default"  # type: ignore[index]
    signed = _json("skill", "sign", str(skill))
    assert _json("skill", "verify", str(skill))["digest"] == signed["digest"]  # type: ignore[index]
    published = _json("skill", "publish", str(skill))
    assert published["ref"] == "report-maker@0.1.0"  # type: ignore[index]
    refs = [row["ref"] for row in _json("skill", "ls")]  # type: ignore[attr-defined]
    assert "report-maker@0.1.0" in refs
    shown = _json("skill", "show", f"report-maker@{signed['digest']}")  # type: ignore[index]
    assert shown["entry"] == "scripts/run.py" and "Instructions" in shown["body"]  # type: ignore[index]
    validated = _json("validate", str(skill))
    assert validated["kind"] == "skill" and validated["digest"] == signed["digest"]  # type: ignore[index]


def test_verify_names_the_changed_file_and_fails(tmp_path: Path) -> None:
    skill = Path(_json("skill", "new", "hello", "--dir", str(tmp_path))["path"])  # type: ignore[index]
    _json("skill", "keygen", "mine")
    _json("skill", "sign", str(skill), "--key", "mine")
    (skill / "scripts" / "run.py").write_text("print('{}')\n")
    code, output = _run("skill", "verify", str(skill), "--json")
    assert code == 1
    assert "changed: scripts/run.py" in json.loads(output)["error"]


def test_validate_reports_the_rule_with_file_and_line(tmp_path: Path) -> None:
    skill = tmp_path / "long-desc"
    skill.mkdir()
    (skill / "SKILL.md").write_text("---\nname: long-desc\ndescription: " + "x" * 1068 + "\n---\nbody\n")
    code, output = _run("validate", str(skill), "--json")
    assert code == 1
    message = json.loads(output)["problems"][0]["message"]
    assert "SKILL.md:3" in message and "description-length" in message


def test_prepare_a_skill_without_dependencies(tmp_path: Path) -> None:
    skill = Path(_json("skill", "new", "plain", "--dir", str(tmp_path))["path"])  # type: ignore[index]
    _json("skill", "keygen")
    _json("skill", "sign", str(skill))
    prepared = _json("skill", "prepare", str(skill))
    assert prepared == {"name": "plain", "digest": prepared["digest"], "environment": "", "installed": False}  # type: ignore[index]


def test_new_refuses_a_name_ending_in_a_newline(tmp_path: Path) -> None:
    skills = tmp_path / "skills"
    result = runner.invoke(app, ["skill", "new", "hello\n", "--dir", str(skills)])
    assert isinstance(result.exception, SkillFormatError)
    assert str(result.exception).startswith("skill name 'hello\\n': use 1-64 lowercase letters")
    assert not skills.exists()
    created = _json("skill", "new", "hello", "--dir", str(skills))
    assert Path(created["path"]).name == "hello"  # type: ignore[index]
