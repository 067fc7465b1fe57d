"""Let layers plug into lower ones without being named by them: a convention on module names.

A package ``shopfloor.<layer>`` that defines ``_validate.py`` hooks into the spec layer
(``shopfloor.spec.register_validator`` for ``shopfloor validate``,
``register_ref_resolver`` for what its references add to an agent's digest); one that
defines ``_doctor.py`` adds lines to ``shopfloor doctor``
(``shopfloor.diagnostics.register_check``). Registration happens when the module is
imported. The spec layer imports the ``_validate`` hooks before it resolves a
reference, so an agent's digest never depends on which modules a process happened
to import first; the doctor imports ``_doctor`` hooks only when it runs.
"""

from __future__ import annotations

import functools
import importlib
from importlib.resources import files

__all__ = ["import_layer_hooks"]

# The CLI sits above every layer and registers nothing.
_SKIPPED = frozenset({"cli"})


@functools.cache
def import_layer_hooks(module: str) -> tuple[str, ...]:
    """Import ``shopfloor.<layer>.<module>`` for every layer that has one (once); return their names."""
    root = files("shopfloor")
    imported: list[str] = []
    for layer in sorted(entry.name for entry in root.iterdir() if entry.is_dir()):
        if layer.startswith(("_", ".")) or layer in _SKIPPED:
            continue
        if not root.joinpath(layer, f"{module}.py").is_file():
            continue
        name = f"shopfloor.{layer}.{module}"
        importlib.import_module(name)
        imported.append(name)
    return tuple(imported)
