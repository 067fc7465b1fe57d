"""Dataset sources: items that come from somewhere other than a dataset file of the suite, such as a
public benchmark's files in an installed package. A suite names one as a mapping::

    dataset:
      - {source: bfcl, category: simple_python, limit: 20}

Each source is a ``DatasetSource`` (its ``Options`` checked with ``extra="forbid"``) registered by
name in ``dataset_sources()``; it returns a ``Dataset`` versioned by the digest of what it read.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from shopfloor._registry import Registry
from shopfloor.config import Settings
from shopfloor.errors import SourceLocation, SpecError
from shopfloor.evals._dataset import Dataset

__all__ = ["DatasetSource", "SourceEntry", "SourceOptions", "dataset_sources", "load_source"]


class SourceEntry(BaseModel):
    """A dataset source's name and its options (checked against that source's own options model)."""

    model_config = ConfigDict(extra="allow")

    source: str = Field(description="a dataset source: bfcl, agentdojo")


class SourceOptions(BaseModel):
    """The options every source takes; each source's own model adds to them."""

    model_config = ConfigDict(extra="forbid")

    #: at most this many items (after ``offset``), so a public benchmark runs as a bounded subset
    limit: int | None = Field(None, ge=1)
    offset: int = Field(0, ge=0)
    #: only these item ids (in the source's order)
    ids: list[str] | None = None


class DatasetSource(ABC):
    """Where a suite's items come from when they are not in a file of its own."""

    Options: ClassVar[type[SourceOptions]] = SourceOptions

    def __init__(self, name: str, options: SourceOptions, settings: Settings) -> None:
        self.name = name
        self.options = options
        self.settings = settings

    @abstractmethod
    def load(self) -> Dataset:
        """The items, with a digest of every byte they were read from and of the selection."""


def dataset_sources() -> Registry[type[DatasetSource]]:
    """The dataset sources by name, imported at first use."""
    return Registry(
        "dataset source",
        {
            "bfcl": "shopfloor.evals._bfcl:BfclSource",
            "agentdojo": "shopfloor.evals._agentdojo:AgentDojoSource",
        },
    )


def load_source(
    entry: dict[str, Any], settings: Settings, *, registry: Registry[type[DatasetSource]] | None = None
) -> Dataset:
    """The dataset of a ``{source: NAME, ...options}`` entry; bad options name the source and the option."""
    registry = registry or dataset_sources()
    name = str(entry.get("source"))
    where = SourceLocation(file=f"(dataset source {name})")
    if name not in registry:
        raise SpecError([(where, f"unknown dataset source {name!r}; known: {', '.join(registry.names())}")])
    cls = registry.get(name)
    try:
        options = cls.Options.model_validate({k: v for k, v in entry.items() if k != "source"})
    except ValidationError as exc:
        known = ", ".join(cls.Options.model_fields)
        problems = [
            (where, f"{'.'.join(map(str, e['loc']))}: {e['msg']} (options of {name!r}: {known})")
            for e in exc.errors()
        ]
        raise SpecError(problems) from None
    return cls(name, options, settings).load()
