"""Let layers extend CLI commands without the CLI naming them: a convention on module names.

A package ``shopfloor.<layer>`` that defines ``_doctor.py`` adds lines to ``shopfloor doctor``
(by calling ``shopfloor.diagnostics.register_check`` at import); one that defines
``_validate.py`` teaches ``shopfloor validate`` a kind of file (``shopfloor.spec.register_validator``).
They are imported only by the command that needs them, so their dependencies load lazily.
"""

from __future__ import annotations

import importlib
from importlib.resources import files

__all__ = ["import_layer_hooks"]


def import_layer_hooks(module: str) -> list[str]:
    """Import ``shopfloor.<layer>.<module>`` for every layer that has one; return their names."""
    root = files("shopfloor")
    imported: list[str] = []
    for layer in sorted(entry.name for entry in root.iterdir() if entry.is_dir()):
        if (
            layer.startswith(("_", "."))
            or layer == "cli"
            or not root.joinpath(layer, f"{module}.py").is_file()
        ):
            continue
        name = f"shopfloor.{layer}.{module}"
        importlib.import_module(name)
        imported.append(name)
    return imported
