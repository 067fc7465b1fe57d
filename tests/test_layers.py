"""The layer rules of docs/architecture.md, checked on the import graph of ``src/shopfloor``.

Every ``import`` and ``from ... import`` counts, at module level or inside a function, relative ones
resolved, and so do lazy registrations spelled ``"shopfloor.PACKAGE.module:Name"``. A package may
import only packages of a lower rank in the document's table; an upward or sideways import fails.
Imports under ``if TYPE_CHECKING:`` are annotations only (nothing runs them) and do not count.
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "src" / "shopfloor"
DOCUMENT = ROOT / "docs" / "architecture.md"

_ROW = re.compile(r"^\|\s*(\d+)\s*\|\s*`([A-Za-z_][\w]*)`\s*\|")
_LAZY = re.compile(r"^shopfloor\.(\w+)(\.\w+)*:\w+$")


@dataclass(frozen=True)
class Violation:
    path: str
    line: int
    source: str
    target: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.source} imports {self.target}"


def layer_ranks(document: Path) -> dict[str, int]:
    """``package -> rank`` from the layer table of the architecture document."""
    ranks = {}
    for line in document.read_text().splitlines():
        match = _ROW.match(line)
        if match:
            ranks[match.group(2)] = int(match.group(1))
    return ranks


def _top(parts: list[str], package: Path) -> str:
    """The layer a dotted name under ``shopfloor`` belongs to (``__init__`` for the package root)."""
    if not parts:
        return "__init__"
    return parts[0] if (package / parts[0]).is_dir() or (package / f"{parts[0]}.py").is_file() else "__init__"


def _targets(node: ast.AST, module: list[str], package: Path) -> list[str]:
    """The layers one AST node imports (``module``: the importing module's dotted parts below shopfloor)."""
    if isinstance(node, ast.Import):
        return [
            _top(alias.name.split(".")[1:], package)
            for alias in node.names
            if alias.name.split(".")[0] == "shopfloor"
        ]
    if isinstance(node, ast.ImportFrom):
        if node.level:
            base = module[: len(module) - node.level]
            parts = base + (node.module.split(".") if node.module else [])
        elif node.module and node.module.split(".")[0] == "shopfloor":
            parts = node.module.split(".")[1:]
        else:
            return []
        if parts:
            return [_top(parts, package)]
        return [_top([alias.name], package) for alias in node.names]  # from shopfloor import errors
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        lazy = _LAZY.match(node.value)
        if lazy:
            return [_top([lazy.group(1)], package)]
    return []


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _type_checking_nodes(tree: ast.AST) -> set[int]:
    """The nodes inside ``if TYPE_CHECKING:`` bodies (their ``else`` runs, so it still counts)."""
    return {
        id(inner)
        for node in ast.walk(tree)
        if isinstance(node, ast.If) and _is_type_checking(node.test)
        for statement in node.body
        for inner in ast.walk(statement)
    }


def layer_violations(package: Path, ranks: dict[str, int]) -> list[Violation]:
    """Every import in ``package`` that is not to a strictly lower rank (or within its own layer)."""
    found = []
    for path in sorted(package.rglob("*.py")):
        relative = path.relative_to(package)
        # A package's __init__ is the package itself, so relative imports resolve from it.
        parts = list(relative.with_suffix("").parts)
        module = parts if parts[-1] != "__init__" else parts[:-1]
        if not module:
            module_for_relative, source = [], "__init__"
        else:
            module_for_relative = module if parts[-1] == "__init__" else module[:-1]
            source = module[0]
        source_rank = ranks.get(source)
        tree = ast.parse(path.read_text(), str(path))
        annotations_only = _type_checking_nodes(tree)
        for node in ast.walk(tree):
            if id(node) in annotations_only:
                continue
            for target in _targets(node, [*module_for_relative, "_"], package):
                if target == source:
                    continue
                target_rank = ranks.get(target)
                if source_rank is None or target_rank is None or target_rank >= source_rank:
                    found.append(Violation(str(relative), getattr(node, "lineno", 0), source, target))
    return found


def test_the_code_keeps_the_documented_layers() -> None:
    ranks = layer_ranks(DOCUMENT)
    violations = layer_violations(PACKAGE, ranks)
    assert not violations, "imports that go up (or sideways) the layer table of docs/architecture.md:\n" + (
        "\n".join(map(str, violations))
    )


def test_every_package_is_in_the_document() -> None:
    ranks = layer_ranks(DOCUMENT)
    packages = {p.name for p in PACKAGE.iterdir() if p.is_dir() and (p / "__init__.py").is_file()}
    modules = {p.stem for p in PACKAGE.glob("*.py")}
    assert packages | modules <= set(ranks), (
        f"not in the layer table of docs/architecture.md: {sorted((packages | modules) - set(ranks))}"
    )


def _tree(root: Path, files: dict[str, str]) -> Path:
    package = root / "shopfloor"
    for name, text in files.items():
        path = package / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return package


SYNTHETIC_RANKS = {"errors": 0, "__init__": 1, "agent": 2, "runtime": 3}


@pytest.mark.parametrize(
    "code",
    [
        "from shopfloor.runtime import Runtime\n",
        "import shopfloor.runtime._x\n",
        "def late():\n    from shopfloor.runtime import Runtime\n",
        "from ..runtime import Runtime\n",
        "LAZY = {'x': 'shopfloor.runtime._x:Thing'}\n",
    ],
    ids=["from", "import", "inside-a-function", "relative", "lazy-registration"],
)
def test_an_upward_import_fails(tmp_path: Path, code: str) -> None:
    package = _tree(
        tmp_path,
        {
            "__init__.py": "",
            "errors.py": "",
            "agent/__init__.py": "from shopfloor.agent._loop import *\n",
            "agent/_loop.py": "from shopfloor import errors\n" + code,
            "runtime/__init__.py": "",
            "runtime/_x.py": "from shopfloor.agent import _loop\nfrom . import _x\n",
        },
    )
    (violation,) = layer_violations(package, SYNTHETIC_RANKS)
    assert (violation.path, violation.source, violation.target) == ("agent/_loop.py", "agent", "runtime")


def test_downward_and_internal_imports_pass(tmp_path: Path) -> None:
    package = _tree(
        tmp_path,
        {
            "__init__.py": "from shopfloor.errors import E\n",
            "errors.py": "",
            "agent/__init__.py": "from ._loop import run\nfrom shopfloor import errors\n",
            "agent/_loop.py": "def f():\n    from shopfloor.errors import E\n",
            "runtime/__init__.py": "from shopfloor.agent import run\nfrom shopfloor import load\n",
        },
    )
    assert layer_violations(package, SYNTHETIC_RANKS) == []


def test_an_import_for_annotations_only_passes(tmp_path: Path) -> None:
    package = _tree(
        tmp_path,
        {
            "__init__.py": "",
            "errors.py": "",
            "agent/__init__.py": (
                "from typing import TYPE_CHECKING\n"
                "import typing\n"
                "if TYPE_CHECKING:\n    from shopfloor.runtime import Runtime\n"
                "if typing.TYPE_CHECKING:\n    import shopfloor.runtime\n"
                "else:\n    from shopfloor.runtime import _x\n"
            ),
            "runtime/__init__.py": "",
            "runtime/_x.py": "",
        },
    )
    (violation,) = layer_violations(package, SYNTHETIC_RANKS)  # the else branch runs: it counts
    assert (violation.source, violation.target) == ("agent", "runtime")


def test_an_unlisted_package_fails(tmp_path: Path) -> None:
    package = _tree(
        tmp_path, {"__init__.py": "", "errors.py": "", "newthing/__init__.py": "import shopfloor.errors\n"}
    )
    (violation,) = layer_violations(package, SYNTHETIC_RANKS)
    assert (violation.source, violation.target) == ("newthing", "errors")
