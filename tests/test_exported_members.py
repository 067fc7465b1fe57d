"""Every public package exports exactly the public names its modules define (httpx style)."""

from __future__ import annotations

import importlib
import pkgutil

import pytest

import shopfloor

PACKAGES = sorted(
    name
    for _, name, ispkg in pkgutil.walk_packages(shopfloor.__path__, "shopfloor.")
    if ispkg and "._" not in name
)


@pytest.mark.parametrize("package", PACKAGES)
def test_all_lists_public_names(package: str) -> None:
    module = importlib.import_module(package)
    exported = set(getattr(module, "__all__", []))
    public = {
        name
        for name, value in vars(module).items()
        if not name.startswith("_") and getattr(value, "__module__", "").startswith(package + "._")
    }
    assert public <= exported, f"{package}: public but not in __all__: {sorted(public - exported)}"
    missing = [name for name in exported if not hasattr(module, name)]
    assert not missing, f"{package}: __all__ names missing attributes: {missing}"


def test_test_modules_have_unique_names() -> None:
    """pytest imports test modules by basename ('prepend' mode): two alike break collection."""
    from collections import Counter
    from pathlib import Path

    names = Counter(p.name for p in Path(__file__).parent.rglob("test_*.py"))
    assert [name for name, count in names.items() if count > 1] == []
