"""One registry for every extension point: names to implementations, imported at first use.

A sandbox backend, a model provider, a workspace store, a telemetry exporter, a
built-in tool, a doctor check: each layer has a function that returns a fresh
``Registry`` of its defaults (``sandbox_backends()``, ``model_providers()``...). The
composition root (``shopfloor.runtime.compose``) holds one of each and passes it
down; a test or an embedding application adds entries to its own copy, never to a
process-wide table. An entry is the object itself or its import path
``"module:attribute"``, imported when first asked for, so optional dependencies
(``llama_cpp``, ``boto3``, gRPC) load only when used.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator, Mapping
from typing import Generic, TypeVar, cast

__all__ = ["Registry"]

T = TypeVar("T")


class Registry(Generic[T]):
    """Named entries of one kind, in the order they were added (a name added again keeps its place)."""

    def __init__(self, kind: str, entries: Mapping[str, T | str] | None = None) -> None:
        #: what the entries are, for messages ("sandbox backend", "model provider")
        self.kind = kind
        self._entries: dict[str, T | str] = dict(entries or {})

    def register(self, name: str, entry: T | str) -> None:
        """Add (or replace) ``name``: the object, or ``"module:attribute"`` imported at first use."""
        if isinstance(entry, str) and ":" not in entry:
            raise ValueError(f"{self.kind} {name!r}: an import path is 'module:attribute', got {entry!r}")
        self._entries[name] = entry

    def unregister(self, name: str) -> None:
        self._entries.pop(name, None)

    def names(self) -> list[str]:
        """The names in the order they were added."""
        return list(self._entries)

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(list(self._entries))

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, name: str) -> T:
        """The entry called ``name``, imported if it was given by path; KeyError names the known ones."""
        try:
            entry = self._entries[name]
        except KeyError:
            raise KeyError(
                f"unknown {self.kind} {name!r}; known: {', '.join(sorted(self._entries))}"
            ) from None
        if isinstance(entry, str):
            module_name, _, attribute = entry.partition(":")
            loaded = cast(T, getattr(importlib.import_module(module_name), attribute))
            self._entries[name] = loaded
            return loaded
        return entry

    def copy(self) -> Registry[T]:
        """An independent registry with the same entries."""
        return Registry(self.kind, self._entries)
