"""Datasets: JSONL, CSV or YAML files of items, each with an id, an input, what is expected, tags.

A dataset is versioned by the sha256 of its bytes, so an evaluation records exactly which questions
it asked. Every problem names the file and the line (a JSONL line, a CSV row, a YAML node).
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from shopfloor.errors import SourceLocation, SpecError
from shopfloor.spec import compose_yaml, describe_value

__all__ = [
    "MAX_DATASET_BYTES",
    "Dataset",
    "Item",
    "check_item_path",
    "dataset_loaders",
    "load_dataset",
    "load_datasets",
]

#: a dataset file larger than this is refused before it is read
MAX_DATASET_BYTES = 64 << 20


class _ItemModel(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: str | int = Field(description="unique within the dataset")
    input: str | dict[str, Any] | list[Any] = Field(description="the task given to the agent")
    expected: Any = None
    reference: Any = None
    metadata: dict[str, Any] = Field(default_factory=dict)
    tags: list[str] = Field(default_factory=list)
    files: dict[str, str] = Field(
        default_factory=dict, description="text files the item's run finds in its workspace, by path"
    )

    @field_validator("files")
    @classmethod
    def _paths(cls, value: dict[str, str]) -> dict[str, str]:
        for path in value:
            check_item_path(path)
        return value


def check_item_path(path: str) -> str:
    """``path`` if it is a relative path inside the workspace (``a/b.txt``), else ``ValueError``."""
    parts = path.split("/")
    if not path or path.startswith("/") or any(part in ("", ".", "..") for part in parts) or "\\" in path:
        raise ValueError(f"an item's file path is relative, without '.', '..' or '\\\\': got {path[:80]!r}")
    return path


@dataclass(frozen=True, kw_only=True)
class Item:
    """One question of a dataset; ``input`` is what the agent is asked (JSON text if structured)."""

    id: str
    input: str
    expected: Any = None
    reference: Any = None
    metadata: dict[str, Any] = field(default_factory=dict)
    tags: tuple[str, ...] = ()
    #: text files written to the item's run's fresh workspace before it starts (path -> content):
    #: the state a benchmark's task begins from (an AgentDojo scenario)
    files: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        data = {
            "id": self.id,
            "input": self.input,
            "expected": self.expected,
            "reference": self.reference,
            "metadata": self.metadata,
            "tags": list(self.tags),
        }
        return data | {"files": self.files} if self.files else data


@dataclass(frozen=True, kw_only=True)
class Dataset:
    path: Path
    #: ``sha256:<hex>`` of the file's bytes
    digest: str
    items: tuple[Item, ...]


Row = tuple[int, Any]
Loader = Callable[[str, str], list[Row]]


def _item(file: str, line: int, raw: Any) -> Item:
    if not isinstance(raw, dict):
        raise SpecError(
            [(SourceLocation(file=file, line=line), f"expected an item mapping, found {describe_value(raw)}")]
        )
    try:
        model = _ItemModel.model_validate(raw)
    except ValidationError as exc:
        problems = [
            (SourceLocation(file=file, line=line), f"{'.'.join(map(str, e['loc'])) or 'item'}: {e['msg']}")
            for e in exc.errors()
        ]
        raise SpecError(problems) from None
    text = model.input if isinstance(model.input, str) else json.dumps(model.input, sort_keys=True)
    return Item(
        id=str(model.id),
        input=text,
        expected=model.expected,
        reference=model.reference,
        metadata=model.metadata,
        tags=tuple(model.tags),
        files=model.files,
    )


def _jsonl(text: str, file: str) -> list[Row]:
    rows: list[Row] = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            rows.append((number, json.loads(line)))
        except json.JSONDecodeError as exc:
            raise SpecError(
                [(SourceLocation(file=file, line=number, column=exc.colno), f"invalid JSON: {exc.msg}")]
            ) from None
    return rows


def _cell(value: str) -> Any:
    """A CSV cell: JSON where it parses as JSON (numbers, lists), else the text itself."""
    try:
        return json.loads(value)
    except json.JSONDecodeError:
        return value


def _csv(text: str, file: str) -> list[Row]:
    reader = csv.DictReader(io.StringIO(text))
    rows: list[Row] = []
    for record in reader:
        line = reader.line_num
        if None in record:
            raise SpecError(
                [(SourceLocation(file=file, line=line), "more cells than the header has columns")]
            )
        raw: dict[str, Any] = {}
        for key, value in record.items():
            if value in (None, ""):
                continue
            if key in ("input", "id"):
                raw[key] = value
            elif key == "tags":
                raw[key] = [tag.strip() for tag in value.replace(";", ",").split(",") if tag.strip()]
            elif key in ("expected", "reference"):
                raw[key] = _cell(value)
            else:
                raw.setdefault("metadata", {})[key] = _cell(value)
        rows.append((line, raw))
    return rows


def _yaml(text: str, file: str) -> list[Row]:
    doc = compose_yaml(text, file)
    if doc.problems:
        raise SpecError(list(doc.problems))
    data = doc.data.get("items") if isinstance(doc.data, dict) else doc.data
    if not isinstance(data, list):
        raise SpecError([(doc.location(()), "expected a list of items (or a mapping with `items:`)")])
    prefix: tuple[str | int, ...] = ("items",) if isinstance(doc.data, dict) else ()
    return [(doc.location((*prefix, index)).line or 1, raw) for index, raw in enumerate(data)]


def dataset_loaders() -> dict[str, Loader]:
    """How each file suffix is read into (line, raw item) rows."""
    return {".jsonl": _jsonl, ".csv": _csv, ".yaml": _yaml, ".yml": _yaml}


def load_dataset(path: Path, *, loaders: dict[str, Loader] | None = None) -> Dataset:
    """Read and validate a dataset file; ids must be unique."""
    loaders = loaders or dataset_loaders()
    file = str(path)
    loader = loaders.get(path.suffix.lower())
    if loader is None:
        raise SpecError(
            [
                (
                    SourceLocation(file=file),
                    f"unknown dataset format {path.suffix!r}; use one of {', '.join(loaders)}",
                )
            ]
        )
    try:
        size = path.stat().st_size
        if size > MAX_DATASET_BYTES:
            raise SpecError(
                [
                    (
                        SourceLocation(file=file),
                        f"{size} bytes is over the {MAX_DATASET_BYTES} byte limit of a dataset",
                    )
                ]
            )
        raw = path.read_bytes()
    except OSError as exc:
        raise SpecError([(SourceLocation(file=file), f"cannot read the dataset: {exc.strerror}")]) from None
    try:
        text = raw.decode()
    except UnicodeDecodeError as exc:
        raise SpecError([(SourceLocation(file=file), f"not UTF-8 text (byte {exc.start})")]) from None
    items: list[Item] = []
    seen: dict[str, int] = {}
    for line, row in loader(text, file):
        item = _item(file, line, row)
        if item.id in seen:
            raise SpecError(
                [
                    (
                        SourceLocation(file=file, line=line),
                        f"duplicate item id {item.id!r} (first at line {seen[item.id]})",
                    )
                ]
            )
        seen[item.id] = line
        items.append(item)
    if not items:
        raise SpecError([(SourceLocation(file=file), "the dataset has no items")])
    return Dataset(path=path, digest=f"sha256:{hashlib.sha256(raw).hexdigest()}", items=tuple(items))


def load_datasets(
    paths: Sequence[Path | Any], *, source: Callable[[Any], Dataset] | None = None
) -> tuple[list[Item], str]:
    """Items of several datasets (ids unique across them) and one digest over all of them; an entry
    that is not a path is read by ``source`` (``evals.load_source`` with the settings)."""
    items: list[Item] = []
    digests: list[str] = []
    for path in paths:
        if isinstance(path, Path):
            dataset = load_dataset(path)
        elif source is not None:
            dataset = source(path)
        else:
            raise TypeError(f"no dataset source reader for {path!r}")
        items.extend(dataset.items)
        digests.append(dataset.digest)
    ids = [item.id for item in items]
    duplicates = sorted({i for i in ids if ids.count(i) > 1})
    if duplicates:
        raise SpecError(
            [
                (
                    SourceLocation(file=str(paths[-1]) if isinstance(paths[-1], Path) else "(datasets)"),
                    f"item ids repeated across datasets: {', '.join(duplicates)}",
                )
            ]
        )
    if len(digests) == 1:
        return items, digests[0]
    return items, "sha256:" + hashlib.sha256("\n".join(digests).encode()).hexdigest()
