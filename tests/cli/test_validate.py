"""``shopfloor validate``: ok line or file:line:col problems, exit codes, --json, pluggable kinds."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from shopfloor.cli import app
from shopfloor.config import load_settings
from shopfloor.errors import SkillFormatError, SpecError
from shopfloor.runtime import compose
from shopfloor.spec import (
    ValidationReport,
    Validator,
    agent_validator,
    is_skill_dir,
    spec_resolvers,
    validate_path,
)

runner = CliRunner()


@pytest.fixture
def good(tmp_path: Path) -> Path:
    (tmp_path / "agent.yaml").write_text("name: helper\nversion: 0.3.0\n")
    return tmp_path


@pytest.fixture
def bad(tmp_path: Path) -> Path:
    path = tmp_path / "bad.yaml"
    path.write_text("name: helper\nlimits:\n  max_steps: many\nmodle: test\n")
    return path


def test_ok_line_has_name_version_digest(good: Path) -> None:
    result = runner.invoke(app, ["validate", str(good)])
    assert result.exit_code == 0, result.output
    digest = compose(load_settings()).load_spec(good).digest
    assert result.output.strip() == f"ok helper 0.3.0 {digest}"


def test_problems_print_file_line_col_and_exit_1(bad: Path) -> None:
    result = runner.invoke(app, ["validate", str(bad)])
    assert result.exit_code == 1
    lines = result.output.strip().splitlines()
    assert lines[0].startswith(f"{bad}:3:14: limits.max_steps")
    assert lines[1].startswith(f"{bad}:4:1: unknown key 'modle' in the agent spec: did you mean 'model'?")
    assert lines[2] == f"2 problems in {bad}"


def test_json_output(good: Path, bad: Path) -> None:
    ok = json.loads(runner.invoke(app, ["validate", str(good), "--json"]).stdout)
    assert ok["ok"] is True and ok["kind"] == "agent" and ok["name"] == "helper"
    assert ok["path"] == str((good / "agent.yaml").resolve())
    result = runner.invoke(app, ["validate", str(bad), "--json"])
    assert result.exit_code == 1
    failed = json.loads(result.stdout)
    assert failed["ok"] is False
    assert [(p["line"], p["column"]) for p in failed["problems"]] == [(3, 14), (4, 1)]
    assert failed["problems"][0]["file"] == str(bad)


def test_unknown_kind_of_path(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("hello")
    result = runner.invoke(app, ["validate", str(tmp_path / "notes.txt")])
    assert result.exit_code == 1
    assert "expected an agent.yaml or a directory containing one" in result.output


def test_missing_path(tmp_path: Path) -> None:
    result = runner.invoke(app, ["validate", str(tmp_path / "nope")])
    assert result.exit_code == 1
    assert f"{tmp_path / 'nope'}: no such file or directory" in result.output


def test_a_validator_handles_its_kind(tmp_path: Path) -> None:
    skill = tmp_path / "pdf"
    skill.mkdir()
    (skill / "SKILL.md").write_text("---\nname: pdf\n---\n")

    def validate_skill(path: Path) -> ValidationReport:
        if "version" not in (path / "SKILL.md").read_text():
            raise SkillFormatError(f"{path / 'SKILL.md'}:2: missing version")
        return ValidationReport(
            kind="skill", name="pdf", version="1.0", digest="sha256:" + "1" * 64, path=path
        )

    validators = [Validator(kind="skill", accepts=is_skill_dir, validate=validate_skill)]
    with pytest.raises(SkillFormatError, match="missing version"):
        validate_path(skill, validators)
    (skill / "SKILL.md").write_text("---\nname: pdf\nversion: 1.0\n---\n")
    assert validate_path(skill, validators).digest == "sha256:" + "1" * 64


def test_the_cli_validates_skills_with_the_skills_layer(tmp_path: Path) -> None:
    skill = tmp_path / "pdf"
    skill.mkdir()
    (skill / "SKILL.md").write_text("---\nname: pdf\ndescription: Read PDFs.\n---\nRead it.\n")
    result = runner.invoke(app, ["validate", str(skill)])
    assert result.exit_code == 0, result.output
    assert result.output.startswith("ok pdf ")


def test_skill_dir_without_a_skill_validator_says_so(tmp_path: Path) -> None:
    (tmp_path / "SKILL.md").write_text("---\nname: x\n---\n")
    with pytest.raises(SpecError, match="a skill directory, but no skill validator was given"):
        validate_path(tmp_path, [agent_validator(spec_resolvers())])


@pytest.mark.slow  # starts the installed console script
def test_console_script_end_to_end(bad: Path) -> None:
    done = subprocess.run(
        [str(Path(sys.executable).parent / "shopfloor"), "validate", str(bad)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 1
    assert f"{bad}:3:14:" in done.stdout
