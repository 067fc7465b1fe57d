"""Dependency environments: wheels from the operator's index only, installed in the sandbox, sealed, and
checked against their lock before each use. Offline: the index is a local find-links directory."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import stat
import zipfile
from pathlib import Path

import pytest

from shopfloor.config import Settings
from shopfloor.errors import SkillDependencyError
from shopfloor.skills import SkillTool, load_skill, new_skill, prepare_environment
from shopfloor.skills._envlock import seal
from shopfloor.tools import ToolContext

SCRIPT = """
import json, os, sys, probe_pkg
json.load(sys.stdin)
print(json.dumps({"result": f"{probe_pkg.VALUE} {os.path.dirname(probe_pkg.__file__)}"}))
"""


def _record_hash(data: bytes) -> str:
    return "sha256=" + base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()


def make_wheel(directory: Path, name: str = "probe_pkg", version: str = "1.0") -> Path:
    """A pure-Python wheel, built by hand (no build backend runs)."""
    info = f"{name}-{version}.dist-info"
    files = {
        f"{name}/__init__.py": b"VALUE = 42\n",
        f"{info}/METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n".encode(),
        f"{info}/WHEEL": b"Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
    }
    record = "".join(f"{path},{_record_hash(data)},{len(data)}\n" for path, data in files.items())
    files[f"{info}/RECORD"] = (record + f"{info}/RECORD,,\n").encode()
    wheel = directory / f"{name}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as archive:
        for path, data in files.items():
            archive.writestr(path, data)
    return wheel


@pytest.fixture
def index(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The operator's index: a find-links directory and no remote index (pip's own variables)."""
    directory = tmp_path / "wheels"
    directory.mkdir()
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    monkeypatch.setenv("PIP_FIND_LINKS", str(directory))
    return directory


def _skill(settings: Settings, requirements: str) -> Path:
    skill_dir = new_skill("probe", settings.home.parent / "skills")
    (skill_dir / "scripts" / "run.py").write_text(SCRIPT)
    (skill_dir / "requirements.txt").write_text(requirements)
    sidecar = skill_dir / "shopfloor.yaml"
    sidecar.write_text(sidecar.read_text() + "dependencies:\n  python: requirements.txt\n")
    return skill_dir


def _ctx() -> ToolContext:
    return ToolContext(run_id="run-1", step=1, call_id="call-1", idempotency_key="run-1:1")


async def test_installed_from_the_configured_index_sealed_and_locked(settings: Settings, index: Path) -> None:
    make_wheel(index)
    skill = load_skill(_skill(settings, "probe-pkg==1.0\n"))
    env = await prepare_environment(skill, settings)
    assert env.installed and env.path is not None
    value, where = (await SkillTool(skill, settings=settings).call({"text": "x"}, _ctx()))["result"].split()
    assert value == "42" and where.startswith(str(env.path))
    for path in [env.path, *env.path.rglob("*")]:
        info = path.lstat()
        assert (info.st_uid, info.st_gid) == (os.geteuid(), os.getegid()), path
        if not stat.S_ISLNK(info.st_mode):
            assert info.st_mode & 0o7022 == 0, f"{path}: {oct(info.st_mode)}"
    lock = json.loads((env.path / ".shopfloor-lock.json").read_text())
    assert lock["requested"] == ["probe-pkg==1.0"]
    assert lock["distributions"]["probe_pkg"] == "1.0"
    assert any(p.endswith("site-packages/probe_pkg/__init__.py") for p in lock["files"])
    again = await prepare_environment(skill, settings)
    assert (again.path, again.installed) == (env.path, False)


async def test_a_changed_environment_is_refused_naming_the_file(settings: Settings, index: Path) -> None:
    make_wheel(index)
    skill = load_skill(_skill(settings, "probe-pkg==1.0\n"))
    env = await prepare_environment(skill, settings)
    assert env.path is not None
    (site,) = env.path.glob("lib/python3*/site-packages")
    (site / "evil.pth").write_text("import os; os.system('id')\n")
    with pytest.raises(
        SkillDependencyError,
        match=r"changed since it was installed: added: lib/python3[.0-9]+/site-packages/evil\.pth",
    ):
        await prepare_environment(skill, settings)
    (site / "evil.pth").unlink()
    (site / "probe_pkg" / "__init__.py").write_text("VALUE = 666\n")
    with pytest.raises(
        SkillDependencyError, match=r"changed: lib/python3[.0-9]+/site-packages/probe_pkg/__init__\.py"
    ):
        await prepare_environment(skill, settings)


def test_sealing_changes_no_link_target_and_refuses_special_files(tmp_path: Path) -> None:
    host_file = tmp_path / "host-file"
    host_file.write_text("host\n")
    os.chmod(host_file, 0o600)
    env = tmp_path / "env"
    (env / "lib").mkdir(parents=True)
    (env / "lib" / "mod.py").write_text("x = 1\n")
    os.chmod(env / "lib" / "mod.py", 0o4777)
    (env / "lib" / "link").symlink_to(host_file)
    outside = tmp_path / "outside"
    outside.mkdir(mode=0o700)
    (env / "dirlink").symlink_to(outside)
    seal(env)
    assert stat.S_IMODE(host_file.stat().st_mode) == 0o600
    assert stat.S_IMODE(outside.stat().st_mode) == 0o700
    assert stat.S_IMODE((env / "lib" / "mod.py").stat().st_mode) == 0o755
    os.mkfifo(env / "lib" / "pipe")
    with pytest.raises(SkillDependencyError, match=r"lib/pipe: not a regular file, directory or link"):
        seal(env)


@pytest.mark.skipif(os.geteuid() != 0, reason="the refusal is for a process running as root")
async def test_as_root_without_a_confining_sandbox_nothing_is_installed(
    settings: Settings, index: Path
) -> None:
    make_wheel(index)
    unconfined = settings.model_copy(
        update={"sandbox": settings.sandbox.model_copy(update={"backend": "none"})}
    )
    skill = load_skill(_skill(settings, "probe-pkg==1.0\n"))
    with pytest.raises(SkillDependencyError, match="sandbox backend is 'none' and this process is root"):
        await prepare_environment(skill, unconfined)
    assert list((settings.home / "cache" / "skill-envs" / "python").glob("*/bin")) == []
