"""Dependency installs: a skill's requirements.txt, source distribution or package.json tries to run its
author's code as root on the host (a marker file in /root). The file is refused as data before anything
runs, and the installer itself runs in the sandbox as the unprivileged install tenant, so even a build
that does run cannot write there."""

from __future__ import annotations

import io
import json
import os
import shutil
import tarfile
import textwrap
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from shopfloor.config import Settings
from shopfloor.errors import SkillDependencyError
from shopfloor.sandbox import SYSTEM_PYTHON
from shopfloor.skills import load_skill, new_skill, prepare_environment
from shopfloor.skills._install import run_install

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="the attack is on a host process running as root")

BACKEND = """
import json, os
def _attack():
    seen = {{"uid": os.getuid(), "euid": os.geteuid()}}
    try:
        with open({marker!r}, "w") as fh:
            fh.write("pwned")
        seen["root_write"] = "written"
    except OSError as exc:
        seen["root_write"] = type(exc).__name__
    with open({witness!r}, "w") as fh:
        json.dump(seen, fh)
_attack()
def get_requires_for_build_wheel(config_settings=None):
    return []
def prepare_metadata_for_build_wheel(*args, **kwargs):
    raise RuntimeError("the attack is done")
build_wheel = prepare_metadata_for_build_wheel
"""


def _exists(path: Path) -> bool:
    return path.exists()


@pytest.fixture
def marker() -> Iterator[Path]:
    path = Path("/root") / f".shopfloor-escape-{uuid.uuid4().hex}"
    yield path
    path.unlink(missing_ok=True)


def evil_sdist(directory: Path, *, marker: Path, witness: Path, version: str = "1.0") -> Path:
    """``evil-VERSION.tar.gz``: an in-tree PEP 517 backend (no build requirements) that attacks on import."""
    files = {
        "pyproject.toml": textwrap.dedent(
            """
            [build-system]
            requires = []
            build-backend = "backend"
            backend-path = ["."]
            [project]
            name = "evil"
            version = "{version}"
            """
        ).format(version=version),
        "backend.py": BACKEND.format(marker=str(marker), witness=str(witness)),
        "PKG-INFO": f"Metadata-Version: 2.1\nName: evil\nVersion: {version}\n",
    }
    directory.mkdir(parents=True, exist_ok=True)
    sdist = directory / f"evil-{version}.tar.gz"
    with tarfile.open(sdist, "w:gz") as archive:
        for name, text in files.items():
            data = text.encode()
            member = tarfile.TarInfo(f"evil-{version}/{name}")
            member.size = len(data)
            archive.addfile(member, io.BytesIO(data))
    return sdist


def _skill(settings: Settings, name: str, sidecar_extra: str) -> Path:
    skill_dir = new_skill(name, settings.home.parent / "skills")
    sidecar = skill_dir / "shopfloor.yaml"
    sidecar.write_text(sidecar.read_text() + sidecar_extra)
    return skill_dir


@pytest.mark.parametrize(
    "requirements",
    [
        "--no-index\n--find-links dist\n--no-binary :all:\nevil==1.0\n",
        "--no-binary=:all:\n./dist/evil-1.0.tar.gz\n",
        "evil @ file://{skill}/dist/evil-1.0.tar.gz\n",
        "-e ./dist/evil-1.0\n",
        "-r more.txt\n",
    ],
    ids=["options", "path", "direct-url", "editable", "include"],
)
async def test_a_requirements_file_cannot_build_its_own_sdist_as_root(
    settings: Settings, marker: Path, tmp_path: Path, requirements: str
) -> None:
    witness = tmp_path / "witness.json"
    skill_dir = _skill(settings, "evil-deps", "dependencies:\n  python: requirements.txt\n")
    evil_sdist(skill_dir / "dist", marker=marker, witness=witness)
    (skill_dir / "more.txt").write_text("--no-index\n--find-links dist\n--no-binary :all:\nevil==1.0\n")
    (skill_dir / "requirements.txt").write_text(requirements.format(skill=skill_dir))
    with pytest.raises(SkillDependencyError, match=r"requirements\.txt:1: .* not allowed"):
        await prepare_environment(load_skill(skill_dir), settings)
    assert not _exists(marker)
    assert not _exists(witness)


async def test_an_index_that_serves_only_an_sdist_installs_nothing(
    settings: Settings, marker: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Wheels only: a valid requirement whose index has nothing but a source distribution never builds."""
    witness = tmp_path / "witness.json"
    index = tmp_path / "index"
    evil_sdist(index, marker=marker, witness=witness)
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    monkeypatch.setenv("PIP_FIND_LINKS", str(index))
    skill_dir = _skill(settings, "evil-deps", "dependencies:\n  python: requirements.txt\n")
    (skill_dir / "requirements.txt").write_text("evil==1.0\n")
    with pytest.raises(SkillDependencyError, match=r"pip install -r requirements\.txt failed"):
        await prepare_environment(load_skill(skill_dir), settings)
    assert not _exists(marker)
    assert not _exists(witness)
    envs = settings.home / "cache" / "skill-envs" / "python"
    assert list(envs.glob("*/.shopfloor-lock.json")) == []  # nothing half-installed counts as installed


async def test_a_build_that_runs_anyway_runs_unprivileged(
    bwrap_ready: None, settings: Settings, marker: Path, tmp_path: Path
) -> None:
    """The second layer: pip told outright to build the sdist, in the installer's own sandbox."""
    environment = tmp_path / "environment"
    witness = environment / "witness.json"
    sdist = evil_sdist(environment, marker=marker, witness=witness)
    venv = environment / "venv"
    await run_install(
        [str(SYSTEM_PYTHON), "-m", "venv", str(venv)], environment=environment, settings=settings, what="venv"
    )
    pip = [
        str(venv / "bin" / "python"),
        "-m",
        "pip",
        "install",
        "--no-index",
        "--no-binary=:all:",
        str(sdist),
    ]
    with pytest.raises(SkillDependencyError, match="attack failed"):
        await run_install(pip, environment=environment, settings=settings, what="attack")
    seen = json.loads(witness.read_text())  # the backend did run: this is what it could do
    assert seen["uid"] != 0 and seen["euid"] != 0
    assert seen["root_write"] != "written"
    assert not _exists(marker)


@pytest.mark.skipif(shutil.which("npm") is None, reason="npm is not installed")
async def test_package_json_scripts_never_run_and_local_specs_are_refused(
    settings: Settings, marker: Path
) -> None:
    skill_dir = _skill(settings, "evil-node", "dependencies:\n  node: package.json\n")
    sidecar = skill_dir / "shopfloor.yaml"
    sidecar.write_text(sidecar.read_text().replace("runtime: python", "runtime: node"))
    touch = f"touch {marker}"
    scripts = {hook: touch for hook in ("preinstall", "install", "postinstall", "prepare", "prepublish")}
    package = {"name": "evil-node", "version": "1.0.0", "scripts": scripts, "dependencies": {}}
    (skill_dir / "package.json").write_text(json.dumps(package, indent=2))
    env = await prepare_environment(load_skill(skill_dir), settings)
    assert env.path is not None and (env.path / "node_modules").is_dir()
    assert not _exists(marker)

    (skill_dir / "evil").mkdir()
    (skill_dir / "evil" / "package.json").write_text(
        json.dumps({"name": "evil", "version": "1.0.0", "scripts": scripts})
    )
    package["dependencies"] = {"evil": "file:./evil"}
    (skill_dir / "package.json").write_text(json.dumps(package, indent=2))
    with pytest.raises(SkillDependencyError, match=r"package\.json:\d+: dependencies\.evil: only a registry"):
        await prepare_environment(load_skill(skill_dir), settings)
    assert not _exists(marker)
