"""A skill's dependencies: installed once, outside the sandbox, mounted read-only into it.

Python requirements go into a venv made from the system interpreter (the one the sandbox shows
under ``/usr``); a ``package.json`` is installed with npm into a ``node_modules`` directory. Each
environment is keyed by the sha256 of the runtime and the dependency files, so the same skill
version (and any other with the same dependencies) installs nothing the second time. Only wheels
are installed and npm scripts are off: nothing the skill brings runs outside the sandbox.
"""

from __future__ import annotations

import asyncio
import fcntl
import functools
import hashlib
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from shopfloor.config import Settings
from shopfloor.errors import SkillDependencyError
from shopfloor.sandbox import SYSTEM_PYTHON, Mount, python_runtime
from shopfloor.skills._skill import Skill

__all__ = ["NODE_MODULES_MOUNT", "SkillEnvironment", "environments_dir", "prepare_environment"]

NODE_MODULES_MOUNT = "/opt/skill/node_modules"
_DONE = ".shopfloor-complete"
_INSTALL_TIMEOUT = 900.0


@dataclass(frozen=True, kw_only=True)
class SkillEnvironment:
    """How to start the skill's runtime inside the sandbox, and what to mount for it."""

    interpreter: str
    mounts: tuple[Mount, ...] = ()
    env: dict[str, str] = field(default_factory=dict)
    #: where the environment lives on the host (None: nothing to install)
    path: Path | None = None
    #: whether this call installed it (False: it was cached)
    installed: bool = False


def environments_dir(settings: Settings) -> Path:
    """Where dependency environments are cached: ``$SHOPFLOOR_HOME/cache/skill-envs``."""
    return settings.home / "cache" / "skill-envs"


def _key(*parts: bytes) -> str:
    digest = hashlib.sha256()
    for part in parts:
        digest.update(hashlib.sha256(part).digest())
    return digest.hexdigest()[:32]


def _install_once(directory: Path, build: Callable[[], None]) -> bool:
    """Build ``directory`` unless a complete one exists; True when this call built it."""
    if (directory / _DONE).is_file():
        return False
    directory.parent.mkdir(parents=True, exist_ok=True)
    with open(f"{directory}.lock", "a") as lock:
        # Two runs of the same skill must not install into the same directory at once.
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            if (directory / _DONE).is_file():
                return False
            shutil.rmtree(directory, ignore_errors=True)
            build()
            (directory / _DONE).write_text("")
            return True
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _run(argv: list[str], what: str, cwd: Path | None = None) -> None:
    try:
        result = subprocess.run(argv, cwd=cwd, capture_output=True, text=True, timeout=_INSTALL_TIMEOUT)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise SkillDependencyError(f"{what}: {exc}") from exc
    if result.returncode != 0:
        tail = "\n".join((result.stderr or result.stdout).strip().splitlines()[-15:])
        raise SkillDependencyError(f"{what} failed (exit {result.returncode}):\n{tail}")


@functools.cache
def _version(interpreter: Path) -> bytes:
    # Part of the cache key: a venv made by one interpreter build is useless to another.
    command = [str(interpreter), "-c", "import sys; print(sys.version)"]
    return subprocess.run(command, capture_output=True, check=False).stdout


def _python_env(skill: Skill, requirements: Path, root: Path, interpreter: Path) -> SkillEnvironment:
    version = _version(interpreter)
    venv = root / "python" / _key(str(interpreter).encode(), version, requirements.read_bytes())

    def build() -> None:
        _run([str(interpreter), "-m", "venv", str(venv)], f"{skill.name}: creating a venv")
        pip = [
            str(venv / "bin" / "python"),
            "-m",
            "pip",
            "install",
            "--no-input",
            "--disable-pip-version-check",
        ]
        _run(
            [*pip, "--only-binary=:all:", "-r", str(requirements)],
            f"{skill.name}: pip install -r {requirements.name}",
        )

    installed = _install_once(venv, build)
    runtime = python_runtime(venv)
    return SkillEnvironment(
        interpreter=runtime.executable, mounts=runtime.mounts, path=venv, installed=installed
    )


def _node_env(skill: Skill, package_json: Path, root: Path) -> SkillEnvironment:
    lock_file = package_json.parent / "package-lock.json"
    lock = lock_file.read_bytes() if lock_file.is_file() else b""
    target = root / "node" / _key(package_json.read_bytes(), lock)

    def build() -> None:
        npm = shutil.which("npm")
        if npm is None:
            raise SkillDependencyError(f"{skill.name}: npm is not installed; install Node.js and npm")
        target.mkdir(parents=True)
        shutil.copy2(package_json, target / "package.json")
        if lock:
            shutil.copy2(lock_file, target / "package-lock.json")
        _run(
            [npm, "install", "--omit=dev", "--ignore-scripts", "--no-audit", "--no-fund"],
            f"{skill.name}: npm install",
            cwd=target,
        )
        (target / "node_modules").mkdir(exist_ok=True)

    installed = _install_once(target, build)
    mount = Mount(host_path=target / "node_modules", sandbox_path=NODE_MODULES_MOUNT, read_only=True)
    return SkillEnvironment(
        interpreter="/usr/bin/node",
        mounts=(mount,),
        env={"NODE_PATH": NODE_MODULES_MOUNT},
        path=target,
        installed=installed,
    )


def _prepare(skill: Skill, root: Path, base: Path | None) -> SkillEnvironment:
    interpreter = Path(os.path.abspath(base or (SYSTEM_PYTHON if SYSTEM_PYTHON.exists() else sys.executable)))
    config = skill.config
    if config is None:
        raise SkillDependencyError(f"skill {skill.name!r} has no shopfloor.yaml: it cannot be run")
    if config.runtime == "python":
        if config.dependencies.python is None:
            runtime = python_runtime(interpreter=interpreter)
            return SkillEnvironment(interpreter=runtime.executable, mounts=runtime.mounts)
        return _python_env(skill, skill.path / config.dependencies.python, root, interpreter)
    if config.runtime == "node":
        if config.dependencies.node is None:
            return SkillEnvironment(interpreter="/usr/bin/node")
        return _node_env(skill, skill.path / config.dependencies.node, root)
    return SkillEnvironment(interpreter="/bin/sh")


async def prepare_environment(
    skill: Skill, cache_dir: Path, *, interpreter: Path | None = None
) -> SkillEnvironment:
    """The skill's runtime with its dependencies installed (cached under ``cache_dir``)."""
    return await asyncio.to_thread(_prepare, skill, cache_dir, interpreter)
