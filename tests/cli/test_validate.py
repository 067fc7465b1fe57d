"""``shopfloor validate``: ok line or file:line:col problems, exit codes, --json, pluggable kinds."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from shopfloor._layer_hooks import import_layer_hooks
from shopfloor.cli import app
from shopfloor.errors import SkillFormatError
from shopfloor.spec import ValidationReport, is_skill_dir, load_spec, register_validator, validate_path
from shopfloor.spec import _validators as validators_module

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


@pytest.fixture
def isolated_validators(monkeypatch: pytest.MonkeyPatch) -> None:
    import_layer_hooks("_validate")  # the layers' own registrations first, so the copy keeps them
    monkeypatch.setattr(validators_module, "_VALIDATORS", list(validators_module._VALIDATORS))


def test_ok_line_has_name_version_digest(good: Path) -> None:
    result = runner.invoke(app, ["validate", str(good)])
    assert result.exit_code == 0, result.output
    digest = load_spec(good).digest
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


def test_registered_validator_handles_its_kind(tmp_path: Path, isolated_validators: None) -> None:
    skill = tmp_path / "pdf"
    skill.mkdir()
    (skill / "SKILL.md").write_text("---\nname: pdf\n---\n")

    def validate_skill(path: Path) -> ValidationReport:
        if "version" not in (path / "SKILL.md").read_text():
            raise SkillFormatError(f"{path / 'SKILL.md'}:2: missing version")
        return ValidationReport(
            kind="skill", name="pdf", version="1.0", digest="sha256:" + "1" * 64, path=path
        )

    register_validator(is_skill_dir, validate_skill)
    result = runner.invoke(app, ["validate", str(skill)])
    assert result.exit_code == 1
    assert result.output.startswith(f"{skill}: {skill / 'SKILL.md'}:2: missing version")
    (skill / "SKILL.md").write_text("---\nname: pdf\nversion: 1.0\n---\n")
    assert validate_path(skill).kind == "skill"
    result = runner.invoke(app, ["validate", str(skill)])
    assert result.output.strip() == f"ok pdf 1.0 sha256:{'1' * 64}"


def test_skill_dir_without_a_registered_validator_says_so(tmp_path: Path, isolated_validators: None) -> None:
    validators_module._VALIDATORS[:] = [v for v in validators_module._VALIDATORS if v[0] is not is_skill_dir]
    (tmp_path / "SKILL.md").write_text("---\nname: x\n---\n")
    result = runner.invoke(app, ["validate", str(tmp_path)])
    assert result.exit_code == 1
    assert "a skill directory" in result.output


def test_layer_hooks_import_only_layers_that_have_the_module() -> None:
    assert import_layer_hooks("_model") == ("shopfloor.spec._model",)
    assert import_layer_hooks("_no_such_hook") == ()


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
