"""The one registry every extension point uses: lazy by import path, one copy per owner."""

from __future__ import annotations

import subprocess
import sys

import pytest

from shopfloor._registry import Registry


def test_an_entry_given_by_path_is_imported_only_when_asked_for() -> None:
    code = (
        "import sys\n"
        "from shopfloor._registry import Registry\n"
        "r = Registry('codec', {'hsv': 'colorsys:rgb_to_hsv'})\n"
        "assert 'colorsys' not in sys.modules and 'hsv' in r\n"
        "print(r.get('hsv')(1.0, 0.0, 0.0))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "(0.0, 1.0, 1.0)"


def test_unknown_names_say_what_is_known() -> None:
    registry: Registry[int] = Registry("number", {"one": 1, "two": 2})
    with pytest.raises(KeyError, match="unknown number 'three'; known: one, two"):
        registry.get("three")


def test_a_copy_is_independent_and_order_is_kept() -> None:
    registry: Registry[int] = Registry("number", {"b": 2, "a": 1})
    mine = registry.copy()
    mine.register("c", 3)
    mine.register("b", 20)
    assert mine.names() == ["b", "a", "c"] and mine.get("b") == 20
    assert registry.names() == ["b", "a"] and registry.get("b") == 2
    mine.unregister("a")
    assert "a" not in mine and "a" in registry and len(mine) == 2


def test_an_import_path_must_name_an_attribute() -> None:
    registry: Registry[object] = Registry("thing")
    with pytest.raises(ValueError, match="'module:attribute'"):
        registry.register("x", "colorsys")
