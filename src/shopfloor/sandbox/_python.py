"""A Python interpreter usable inside the sandbox, with the mounts it needs.

The sandbox shows the host's ``/usr`` read-only, so the system interpreter (``/usr/bin/python3``) and any
venv made from it work inside once the venv directory itself is mounted read-only at the same path
(scripts in ``bin/`` carry absolute shebangs). An interpreter outside ``/usr`` (pyenv, conda, uv-managed)
needs its whole prefix mounted read-only too; ``python_runtime`` works that out from ``pyvenv.cfg``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from shopfloor.errors import SandboxPolicyError
from shopfloor.sandbox._policy import Mount

__all__ = ["SYSTEM_PYTHON", "PythonRuntime", "python_runtime"]

SYSTEM_PYTHON = Path("/usr/bin/python3")
_SYSTEM_PREFIXES = ("/usr/",)


@dataclass(frozen=True, kw_only=True)
class PythonRuntime:
    """``executable`` is the path to run inside the sandbox once ``mounts`` are added."""

    executable: str
    mounts: tuple[Mount, ...]


def _prefix_of(binary: Path) -> Path:
    return binary.resolve().parent.parent


def _is_system(path: Path) -> bool:
    return any(str(path.resolve()).startswith(prefix) for prefix in _SYSTEM_PREFIXES)


def python_runtime(venv: Path | None = None, *, interpreter: Path | None = None) -> PythonRuntime:
    """The interpreter of ``venv`` (or ``interpreter``, default the system one) and its read-only mounts."""
    mounts: list[Mount] = []
    if venv is not None:
        venv = Path(os.path.abspath(venv))
        config = venv / "pyvenv.cfg"
        if not config.is_file():
            raise SandboxPolicyError(f"{venv} is not a virtual environment (no pyvenv.cfg)")
        home = next(
            (
                line.split("=", 1)[1].strip()
                for line in config.read_text().splitlines()
                if line.split("=", 1)[0].strip() == "home"
            ),
            None,
        )
        if home is None:
            raise SandboxPolicyError(f"{config} has no 'home' line naming the base interpreter")
        base_bin = Path(home)
        if not _is_system(base_bin):
            prefix = _prefix_of(base_bin / "python3")
            mounts.append(Mount(host_path=prefix, sandbox_path=str(prefix), read_only=True))
        mounts.append(Mount(host_path=venv, sandbox_path=str(venv), read_only=True))
        return PythonRuntime(executable=str(venv / "bin" / "python"), mounts=tuple(mounts))
    binary = Path(os.path.abspath(interpreter or SYSTEM_PYTHON))
    if not binary.exists():
        raise SandboxPolicyError(f"no interpreter at {binary}")
    if not _is_system(binary):
        prefix = _prefix_of(binary)
        mounts.append(Mount(host_path=prefix, sandbox_path=str(prefix), read_only=True))
        return PythonRuntime(executable=str(binary.resolve()), mounts=tuple(mounts))
    return PythonRuntime(executable=str(binary), mounts=())
