"""Dependency files are data: requirement specifiers and registry ranges only, refused with file:line
otherwise, and only files inside the skill, never echoed when they are not."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from shopfloor.config import Settings
from shopfloor.errors import SkillDependencyError, SkillFormatError
from shopfloor.skills import load_skill, new_skill, prepare_environment
from shopfloor.skills._depfiles import read_package_json, read_requirements

SECRET = "root:$y$j9T$s3cr3t-hash-that-must-never-be-printed:19000:0:99999:7:::"


def _requirements(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "requirements.txt"
    path.write_text(text)
    return path


@pytest.mark.parametrize(
    ("line", "what"),
    [
        ("-r other.txt", "the option -r"),
        ("--requirement=other.txt", "the option --requirement"),
        ("-c constraints.txt", "the option -c"),
        ("-e .", "the option -e"),
        ("--editable git+https://example.com/x.git#egg=x", "the option --editable"),
        ("--index-url https://evil.example/simple", "the option --index-url"),
        ("-i https://evil.example/simple", "the option -i"),
        ("--extra-index-url https://evil.example/simple", "the option --extra-index-url"),
        ("--find-links dist", "the option --find-links"),
        ("-f ./dist", "the option -f"),
        ("--no-binary :all:", "the option --no-binary"),
        ("--only-binary :none:", "the option --only-binary"),
        ("--no-index", "the option --no-index"),
        ("--trusted-host evil.example", "the option --trusted-host"),
        ("--pre", "the option --pre"),
        ("six==1.16.0 --config-settings=x=y", "the option --config-settings"),
        ("six==1.16.0 --global-option=--evil", "the option --global-option"),
        ("six==1.16.0 --hash=md5:0123", "the option --hash"),
        ("https://evil.example/evil-1.0-py3-none-any.whl", "a URL or VCS reference"),
        ("evil @ https://evil.example/evil-1.0.tar.gz", "a URL or VCS reference"),
        ("evil@file:///tmp/evil", "a URL or VCS reference"),
        ("git+https://example.com/evil.git#egg=evil", "a URL or VCS reference"),
        ("git@github.com:evil/evil.git", "a URL or VCS reference"),
        ("./dist/evil-1.0.tar.gz", "a local path or archive"),
        ("/tmp/evil", "a local path or archive"),
        ("dist/evil", "a local path or archive"),
        ("evil-1.0-py3-none-any.whl", "a local path or archive"),
        (".", "a local path or archive"),
        ("evil=1.0", "not a PEP 508 requirement specifier"),
    ],
)
def test_every_option_url_and_path_is_refused_with_file_and_line(
    tmp_path: Path, line: str, what: str
) -> None:
    path = _requirements(tmp_path, f"# pinned\nsix==1.16.0\n\n{line}\n")
    with pytest.raises(SkillDependencyError) as info:
        read_requirements(path)
    message = str(info.value)
    assert message.startswith(f"{path}:4: {what}")
    if len(line) > 3 and not line.startswith("-") and "--" not in line:
        assert line not in message  # what is wrong, not the line's text


def test_specifiers_extras_markers_and_hashes_are_kept(tmp_path: Path) -> None:
    digest = "a" * 64
    path = _requirements(
        tmp_path,
        "# a comment\n"
        "pandas==2.2.3  # trailing comment\n"
        "Requests[socks] >= 2.31, <3\n"
        'tomli; python_version < "3.11"\n'
        f"six==1.16.0 \\\n    --hash=sha256:{digest.upper()}\n",
    )
    assert read_requirements(path).lines == (
        "pandas==2.2.3",
        "Requests[socks]<3,>=2.31",
        'tomli; python_version < "3.11"',
        f"six==1.16.0 --hash=sha256:{digest}",
    )


@pytest.mark.parametrize(
    ("spec", "ok"),
    [
        ("7.0.0", True),
        ("^1.2.3", True),
        ("~1.2", True),
        (">=1.0.0 <2.0.0", True),
        ("1.x || 2", True),
        ("1.0.0 - 2.0.0", True),
        ("*", True),
        ("latest", True),
        ("latest\n", False),
        ("1.0.0-beta.1", True),
        ("git+https://example.com/evil.git", False),
        ("git://example.com/evil.git", False),
        ("https://evil.example/evil.tgz", False),
        ("file:../evil", False),
        ("link:../evil", False),
        ("npm:other@1.0.0", False),
        ("evil/evil", False),
        ("github:evil/evil", False),
        ("../evil", False),
        ("evil.tgz", False),
        ("workspace:*", False),
    ],
)
def test_package_json_allows_registry_ranges_only(tmp_path: Path, spec: str, ok: bool) -> None:
    path = tmp_path / "package.json"
    path.write_text(json.dumps({"name": "x", "dependencies": {"is-number": "7.0.0", "dep": spec}}, indent=2))
    if ok:
        assert read_package_json(path).dependencies == {"dependencies": {"is-number": "7.0.0", "dep": spec}}
        return
    with pytest.raises(SkillDependencyError, match=rf"^{path}:5: dependencies\.dep: only a registry version"):
        read_package_json(path)


def test_package_json_refuses_a_package_name_ending_in_a_newline(tmp_path: Path) -> None:
    path = tmp_path / "package.json"
    path.write_text(json.dumps({"name": "x", "dependencies": {"is-number": "7.0.0"}}, indent=2))
    assert read_package_json(path).dependencies == {"dependencies": {"is-number": "7.0.0"}}
    path.write_text(json.dumps({"name": "x", "dependencies": {"is-number\n": "7.0.0"}}, indent=2))
    # The escaped key is not in the text verbatim, so the error points at its section's line.
    with pytest.raises(SkillDependencyError, match=rf"^{path}:3: dependencies: not an npm package name$"):
        read_package_json(path)


def test_package_json_keeps_only_dependencies(tmp_path: Path) -> None:
    path = tmp_path / "package.json"
    doc = {
        "name": "x",
        "scripts": {"preinstall": "touch /root/pwned", "postinstall": "id"},
        "dependencies": {"is-number": "^7"},
        "devDependencies": {"evil": "file:../evil"},
    }
    path.write_text(json.dumps(doc, indent=2))
    written = json.loads(read_package_json(path).text())
    assert written == {
        "name": "shopfloor-skill-environment",
        "version": "0.0.0",
        "private": True,
        "dependencies": {"is-number": "^7"},
    }


@pytest.mark.parametrize("key", ["overrides", "resolutions", "workspaces", "bundleDependencies"])
def test_package_json_fields_that_redirect_installs_are_refused(tmp_path: Path, key: str) -> None:
    path = tmp_path / "package.json"
    path.write_text(json.dumps({"name": "x", "dependencies": {}, key: {"a": "file:/etc"}}, indent=2))
    with pytest.raises(SkillDependencyError, match=rf"^{path}:4: '{key}' is not supported"):
        read_package_json(path)


def _skill_with_dependency(tmp_path: Path, dependency: str, kind: str = "python") -> Path:
    skill_dir = new_skill("deps", tmp_path / "skills")
    sidecar = skill_dir / "shopfloor.yaml"
    sidecar.write_text(sidecar.read_text() + f"dependencies:\n  {kind}: {json.dumps(dependency)}\n")
    return skill_dir


@pytest.fixture
def secret(tmp_path: Path) -> Path:
    path = tmp_path / "shadow"
    path.write_text(SECRET + "\n")
    return path


@pytest.mark.parametrize("kind", ["python", "node"])
def test_dependency_paths_outside_the_skill_are_refused_without_their_content(
    tmp_path: Path, secret: Path, kind: str
) -> None:
    skill_dir = _skill_with_dependency(tmp_path, str(secret), kind)
    sidecar = skill_dir / "shopfloor.yaml"
    for reference in (str(secret), os.path.relpath(secret, skill_dir), "../../shadow"):
        sidecar.write_text(
            sidecar.read_text().rsplit("dependencies:", 1)[0]
            + f"dependencies:\n  {kind}: {json.dumps(reference)}\n"
        )
        with pytest.raises(SkillFormatError) as info:
            load_skill(skill_dir)
        message = str(info.value)
        assert f"{sidecar}:" in message and "relative path inside the skill" in message
        assert "s3cr3t" not in message and "root:" not in message


def test_a_symlinked_dependency_file_is_refused_without_its_content(tmp_path: Path, secret: Path) -> None:
    skill_dir = _skill_with_dependency(tmp_path, "requirements.txt")
    (skill_dir / "requirements.txt").symlink_to(secret)
    with pytest.raises(SkillFormatError) as info:
        load_skill(skill_dir)
    assert "symbolic link requirements.txt" in str(info.value)
    assert "s3cr3t" not in str(info.value)
    (skill_dir / "requirements.txt").unlink()
    (skill_dir / "deps").symlink_to(secret.parent)
    sidecar = skill_dir / "shopfloor.yaml"
    sidecar.write_text(sidecar.read_text().replace("requirements.txt", "deps/shadow"))
    with pytest.raises(SkillFormatError, match="symbolic link deps"):
        load_skill(skill_dir)


async def test_an_option_line_stops_the_install_before_anything_runs(
    tmp_path: Path, settings: Settings
) -> None:
    skill_dir = _skill_with_dependency(tmp_path, "requirements.txt")
    (skill_dir / "requirements.txt").write_text("six==1.16.0\n--no-binary :all:\n")
    with pytest.raises(
        SkillDependencyError, match=r"requirements\.txt:2: the option --no-binary is not allowed"
    ):
        await prepare_environment(load_skill(skill_dir), settings)
    assert not (settings.home / "cache" / "skill-envs").exists()
