"""Checks of the interpreter, the data dir, SQLite and the embedded models."""

from __future__ import annotations

import importlib.util
import platform
import shutil
import sqlite3
import sys
import tempfile
from pathlib import Path

from shopfloor.config import Settings
from shopfloor.diagnostics._checks import CheckResult

__all__ = ["check_data_dir", "check_models", "check_python", "check_sqlite"]

_MIN_PYTHON = (3, 11)
# RETURNING (3.35) is used by the stores; WAL is what makes a commit cheap.
_MIN_SQLITE = (3, 35, 0)
_LOW_DISK = 2 << 30
_DEFAULT_MODEL = "qwen2.5-coder-0.5b"


def check_python(settings: Settings) -> CheckResult:
    version = platform.python_version()
    data = {"version": version, "executable": sys.executable}
    if sys.version_info[:2] >= _MIN_PYTHON:
        return CheckResult(name="python", status="ok", detail=f"{version} ({sys.executable})", data=data)
    return CheckResult(
        name="python",
        status="missing",
        detail=f"{version} is too old: Shopfloor needs 3.11 or newer",
        fix="install Python 3.11+ (apt-get install python3.11) and recreate the virtualenv",
        data=data,
    )


def _existing_ancestor(path: Path) -> Path:
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def check_data_dir(settings: Settings) -> CheckResult:
    home = settings.home
    anchor = _existing_ancestor(home)
    free = shutil.disk_usage(anchor).free
    data = {"home": str(home), "exists": home.exists(), "free_bytes": free}
    state = "exists" if home.exists() else "will be created"
    detail = f"{home} ({state}, {free / (1 << 30):.1f} GiB free)"
    if not home.is_dir() and home.exists():
        return CheckResult(
            name="data dir",
            status="missing",
            detail=f"{home} is not a directory",
            fix="set SHOPFLOOR_HOME",
            data=data,
        )
    if free < _LOW_DISK:
        return CheckResult(
            name="data dir",
            status="warn",
            detail=detail + ": little room for models and workspaces",
            fix="free disk space or point SHOPFLOOR_HOME at a larger disk",
            data=data,
        )
    return CheckResult(name="data dir", status="ok", detail=detail, data=data)


def _wal_works(directory: Path | None) -> tuple[bool, str]:
    with tempfile.TemporaryDirectory(dir=directory, prefix="shopfloor-doctor-") as tmp:
        conn = sqlite3.connect(Path(tmp) / "probe.db")
        try:
            mode = str(conn.execute("PRAGMA journal_mode=WAL").fetchone()[0])
            conn.execute("CREATE TABLE t (x)")
            conn.execute("INSERT INTO t VALUES (1)")
            conn.commit()
        except sqlite3.Error as exc:
            return False, str(exc)
        finally:
            conn.close()
    return mode.lower() == "wal", f"journal_mode={mode}"


def check_sqlite(settings: Settings) -> CheckResult:
    version = sqlite3.sqlite_version
    # Probe on the file system the data will live on: WAL fails on some network file systems.
    where = settings.home if settings.home.is_dir() else None
    wal, why = _wal_works(where)
    data = {"version": version, "wal": wal}
    if sqlite3.sqlite_version_info < _MIN_SQLITE:
        return CheckResult(
            name="sqlite",
            status="missing",
            detail=f"SQLite {version} is older than 3.35",
            fix="use a Python built against a newer libsqlite3 (apt-get install libsqlite3-0)",
            data=data,
        )
    if not wal:
        return CheckResult(
            name="sqlite",
            status="warn",
            detail=f"SQLite {version}, but WAL is unavailable here ({why}): commits will be slow",
            fix="put SHOPFLOOR_HOME on a local file system",
            data=data,
        )
    return CheckResult(name="sqlite", status="ok", detail=f"SQLite {version}, WAL works", data=data)


def check_models(settings: Settings) -> CheckResult:
    directory = settings.models_dir
    files = sorted(directory.glob("*.gguf")) if directory.is_dir() else []
    runtime = importlib.util.find_spec("llama_cpp") is not None
    names = [f"{path.relative_to(directory)} ({path.stat().st_size / (1 << 20):.0f} MiB)" for path in files]
    data = {
        "dir": str(directory),
        "files": [str(p.relative_to(directory)) for p in files],
        "llama_cpp": runtime,
    }
    if not files:
        return CheckResult(
            name="models",
            status="missing",
            detail=f"no embedded model in {directory}",
            fix=f"shopfloor models install {_DEFAULT_MODEL}",
            data=data,
        )
    if not runtime:
        return CheckResult(
            name="models",
            status="warn",
            detail=f"{', '.join(names)}; but llama-cpp-python is not installed",
            fix="pip install 'shopfloor[local]' (compiles llama-cpp-python, ~6 min)",
            data=data,
        )
    return CheckResult(name="models", status="ok", detail=", ".join(names), data=data)
