"""The skills that ship inside the package, signed by the Shopfloor key (``builtin/shopfloor.pub``)."""

from __future__ import annotations

from pathlib import Path

__all__ = ["BUILTIN_DIR", "builtin_skill_dir", "builtin_skill_names"]

BUILTIN_DIR = Path(__file__).parent / "builtin"


def builtin_skill_names() -> list[str]:
    return sorted(p.name for p in BUILTIN_DIR.iterdir() if (p / "SKILL.md").is_file())


def builtin_skill_dir(name: str) -> Path | None:
    path = BUILTIN_DIR / name
    return path if name in builtin_skill_names() else None
