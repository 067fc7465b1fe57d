"""How the test suite reaches embedded models without writing to the real data dir."""

from __future__ import annotations

from pathlib import Path

from shopfloor.config import Settings, load_settings
from shopfloor.errors import ModelInstallError
from shopfloor.models import DEFAULT_CATALOGUE, Catalogue, install_model, model_path

# Read when the test session starts, before any test's isolated home is set: where
# `shopfloor models install` put the real models (only read, never written).
REAL_SETTINGS = load_settings()


def model_for_tests(
    name: str, *, installed: Settings, scratch: Settings, catalogue: Catalogue = DEFAULT_CATALOGUE
) -> Path:
    """The model as ``shopfloor models install`` left it in ``installed``'s data dir, read in place
    (verified by its record, nothing written there); else installed into ``scratch``, a directory of
    the test session, so a missing model never lands in the user's home."""
    try:
        return model_path(name, installed, catalogue=catalogue)
    except ModelInstallError:
        return install_model(name, scratch, catalogue=catalogue).path


def snapshot(root: Path) -> dict[str, tuple[int, int]]:
    """Every path under ``root`` with its size and mtime (ns): equal snapshots, nothing changed."""
    if not root.exists():
        return {}
    found = {}
    for path in [root, *root.rglob("*")]:
        st = path.lstat()
        found[str(path.relative_to(root))] = (st.st_size, st.st_mtime_ns)
    return found
