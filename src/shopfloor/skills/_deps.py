"""A skill's dependencies: installed once, in the sandbox, mounted read-only into the skill's runs.

Python requirements go into a venv made from the system interpreter (the one the sandbox shows
under ``/usr``); a ``package.json`` is installed with npm into a ``node_modules`` directory. The
dependency files are data (``_depfiles``: requirement specifiers and registry ranges only); pip
installs wheels only and npm runs no scripts, from the operator's index, as the unprivileged install
tenant (``_install``). Each environment is keyed by the sha256 of the runtime, the parsed
dependencies and the index, so the same dependencies install nothing the second time; its lock
(``_envlock``) is checked before each use.
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
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

from shopfloor.config import Settings
from shopfloor.errors import SkillDependencyError
from shopfloor.sandbox import SYSTEM_PYTHON, Mount, python_runtime
from shopfloor.skills._depfiles import confined_file, read_package_json, read_requirements
from shopfloor.skills._envlock import is_locked, seal, verify_lock, write_lock
from shopfloor.skills._install import NpmRegistry, PackageIndex, run_install
from shopfloor.skills._sidecar import SIDECAR
from shopfloor.skills._skill import Skill

__all__ = ["NODE_MODULES_MOUNT", "SkillEnvironment", "environments_dir", "prepare_environment"]

NODE_MODULES_MOUNT = "/opt/skill/node_modules"
_REQUIREMENTS = "shopfloor-requirements.txt"


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


@functools.cache
def _version(interpreter: Path) -> bytes:
    # Part of the cache key: a venv made by one interpreter build is useless to another.
    command = [str(interpreter), "-c", "import sys; print(sys.version)"]
    return subprocess.run(command, capture_output=True, check=False).stdout


def _acquire(path: str) -> int:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o600)
    fcntl.flock(fd, fcntl.LOCK_EX)
    return fd


def _reset(directory: Path) -> None:
    shutil.rmtree(directory, ignore_errors=True)
    directory.mkdir(parents=True)


def _finish(directory: Path, requested: list[str]) -> None:
    seal(directory)
    write_lock(directory, requested)


async def _install_once(directory: Path, build: Callable[[], Awaitable[None]], requested: list[str]) -> bool:
    """Build ``directory`` unless its lock exists, then check it against the lock; True when built now."""
    if not is_locked(directory):
        directory.parent.mkdir(parents=True, exist_ok=True)
        # Two runs of the same skill must not install into the same directory at once.
        fd = await asyncio.to_thread(_acquire, f"{directory}.lock")
        try:
            if not is_locked(directory):
                await asyncio.to_thread(_reset, directory)
                await build()
                await asyncio.to_thread(_finish, directory, requested)
                return True
        finally:
            os.close(fd)
    await asyncio.to_thread(verify_lock, directory)
    return False


async def _python_env(
    skill: Skill, requirements_file: Path, root: Path, interpreter: Path, settings: Settings
) -> SkillEnvironment:
    requirements = await asyncio.to_thread(read_requirements, requirements_file)
    index = await asyncio.to_thread(PackageIndex.from_pip_config, os.environ, Path.home())
    version = await asyncio.to_thread(_version, interpreter)
    venv = (
        root / "python" / _key(str(interpreter).encode(), version, requirements.text().encode(), index.key())
    )
    base = await asyncio.to_thread(python_runtime, interpreter=interpreter)

    async def build() -> None:
        (venv / _REQUIREMENTS).write_text(requirements.text())
        await run_install(
            [str(interpreter), "-m", "venv", str(venv)],
            environment=venv,
            settings=settings,
            what=f"{skill.name}: creating a venv",
            mounts=base.mounts,
        )
        if not requirements.lines:
            return
        pip = [
            str(venv / "bin" / "python"),
            "-m",
            "pip",
            "install",
            "--no-input",
            "--disable-pip-version-check",
        ]
        await run_install(
            [
                *pip,
                "--no-cache-dir",
                "--only-binary=:all:",
                *index.pip_flags(),
                "-r",
                str(venv / _REQUIREMENTS),
            ],
            environment=venv,
            settings=settings,
            what=f"{skill.name}: pip install -r {requirements_file.name}",
            network=index.network(),
            mounts=[*base.mounts, *index.mounts()],
            env={"PIP_CONFIG_FILE": os.devnull},
        )

    installed = await _install_once(venv, build, list(requirements.lines))
    runtime = python_runtime(venv)
    return SkillEnvironment(
        interpreter=runtime.executable, mounts=runtime.mounts, path=venv, installed=installed
    )


async def _node_env(skill: Skill, package_json: Path, root: Path, settings: Settings) -> SkillEnvironment:
    dependencies = await asyncio.to_thread(read_package_json, package_json)
    registry = await asyncio.to_thread(NpmRegistry.from_npm_config, os.environ, Path.home())
    target = root / "node" / _key(dependencies.text().encode(), registry.url.encode())

    async def build() -> None:
        npm = shutil.which("npm")
        if npm is None:
            raise SkillDependencyError(f"{skill.name}: npm is not installed; install Node.js and npm")
        (target / "package.json").write_text(dependencies.text())
        flags = ["--omit=dev", "--ignore-scripts", "--no-audit", "--no-fund", "--no-update-notifier"]
        await run_install(
            [npm, "install", *flags, f"--registry={registry.url}", f"--userconfig={os.devnull}"],
            environment=target,
            settings=settings,
            what=f"{skill.name}: npm install",
            network=registry.network(),
            env={"npm_config_cache": "/tmp/npm-cache"},
        )
        (target / "node_modules").mkdir(exist_ok=True)

    requested = [
        f"{name}@{spec}" for section in dependencies.dependencies.values() for name, spec in section.items()
    ]
    installed = await _install_once(target, build, requested)
    mount = Mount(host_path=target / "node_modules", sandbox_path=NODE_MODULES_MOUNT, read_only=True)
    return SkillEnvironment(
        interpreter="/usr/bin/node",
        mounts=(mount,),
        env={"NODE_PATH": NODE_MODULES_MOUNT},
        path=target,
        installed=installed,
    )


def _base_interpreter(interpreter: Path | None) -> Path:
    return Path(os.path.abspath(interpreter or (SYSTEM_PYTHON if SYSTEM_PYTHON.exists() else sys.executable)))


def _dependency_file(skill: Skill, relative: str) -> Path:
    # Checked when the skill was loaded; again here, where the file is about to be read.
    return confined_file(skill.path, relative, str(skill.path / SIDECAR))


async def prepare_environment(
    skill: Skill, settings: Settings, *, interpreter: Path | None = None
) -> SkillEnvironment:
    """The skill's runtime with its dependencies installed (cached under ``environments_dir``) and checked."""
    config = skill.config
    if config is None:
        raise SkillDependencyError(f"skill {skill.name!r} has no shopfloor.yaml: it cannot be run")
    root = environments_dir(settings)
    if config.runtime == "python":
        base = await asyncio.to_thread(_base_interpreter, interpreter)
        if config.dependencies.python is None:
            runtime = await asyncio.to_thread(python_runtime, interpreter=base)
            return SkillEnvironment(interpreter=runtime.executable, mounts=runtime.mounts)
        requirements = await asyncio.to_thread(_dependency_file, skill, config.dependencies.python)
        return await _python_env(skill, requirements, root, base, settings)
    if config.runtime == "node":
        if config.dependencies.node is None:
            return SkillEnvironment(interpreter="/usr/bin/node")
        package_json = await asyncio.to_thread(_dependency_file, skill, config.dependencies.node)
        return await _node_env(skill, package_json, root, settings)
    return SkillEnvironment(interpreter="/bin/sh")
