"""YAML to plain data, keeping where every key and value was written.

``yaml.safe_load`` forgets positions and silently keeps the last of two
duplicate keys, so a spec is composed into nodes first and turned into data
here: each mapping key and each value remembers its line and column, and
problems (duplicate keys, odd keys, unknown tags) are collected, not raised
one at a time, so a user sees them all at once.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import yaml

from shopfloor.errors import SourceLocation, SpecError

__all__ = ["DataPath", "NodePosition", "Problem", "YamlDocument", "compose_yaml", "format_path"]

DataPath = tuple[str | int, ...]
Problem = tuple[SourceLocation, str]

_MERGE_TAG = "tag:yaml.org,2002:merge"
# libyaml's parser gives the same nodes and marks, several times faster.
_LOADER: type[yaml.SafeLoader] | type[yaml.CSafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
# Aliases can expand exponentially ("billion laughs"); a spec is never near this.
_MAX_NODES = 200_000


@dataclass(frozen=True, kw_only=True)
class NodePosition:
    """Where a value was written; ``key_*`` is set for mapping entries (1-based)."""

    line: int
    column: int
    key_line: int | None = None
    key_column: int | None = None
    #: the scalar exactly as written (``1.10`` stays ``1.10``), for hints
    raw: str | None = None


@dataclass(frozen=True, kw_only=True)
class YamlDocument:
    file: str
    data: Any
    positions: dict[DataPath, NodePosition]
    problems: list[Problem] = field(default_factory=list)

    def location(self, path: DataPath, *, at_key: bool = False) -> SourceLocation:
        """The location of the deepest written part of ``path`` (the key itself if ``at_key``)."""
        for end in range(len(path), -1, -1):
            pos = self.positions.get(path[:end])
            if pos is None:
                continue
            if at_key and end == len(path) and pos.key_line is not None:
                return SourceLocation(file=self.file, line=pos.key_line, column=pos.key_column)
            return SourceLocation(file=self.file, line=pos.line, column=pos.column)
        return SourceLocation(file=self.file, line=1, column=1)


def format_path(path: DataPath) -> str:
    """``("workspace", "mounts", 0, "path")`` -> ``workspace.mounts[0].path``."""
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else part)
    return text


def _mark(file: str, mark: yaml.Mark | None) -> SourceLocation:
    if mark is None:
        return SourceLocation(file=file)
    return SourceLocation(file=file, line=mark.line + 1, column=mark.column + 1)


def compose_yaml(text: str, file: str) -> YamlDocument:
    """Parse one YAML document; raise SpecError for text that is not YAML or is empty."""
    try:
        root = yaml.compose(text, Loader=_LOADER)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        what = " ".join(part for part in (exc.context, exc.problem) if part)
        raise SpecError([(_mark(file, mark), f"invalid YAML: {what}")]) from None
    except yaml.YAMLError as exc:
        raise SpecError([(SourceLocation(file=file), f"invalid YAML: {exc}")]) from None
    if root is None:
        raise SpecError(
            [(SourceLocation(file=file, line=1, column=1), "the file is empty: expected a YAML mapping")]
        )
    builder = _Builder(file)
    data = builder.build(root, ())
    return YamlDocument(file=file, data=data, positions=builder.positions, problems=builder.problems)


class _Builder:
    def __init__(self, file: str) -> None:
        self.file = file
        self.positions: dict[DataPath, NodePosition] = {}
        self.problems: list[Problem] = []
        self._constructor = yaml.SafeLoader("")
        self._active: set[int] = set()
        self._count = 0

    def build(self, node: yaml.Node, path: DataPath, key: yaml.Node | None = None) -> Any:
        self._count += 1
        if self._count > _MAX_NODES:
            raise SpecError([(_mark(self.file, node.start_mark), "the document expands to too many values")])
        raw = node.value if isinstance(node, yaml.ScalarNode) else None
        self.positions[path] = NodePosition(
            line=node.start_mark.line + 1,
            column=node.start_mark.column + 1,
            key_line=key.start_mark.line + 1 if key is not None else None,
            key_column=key.start_mark.column + 1 if key is not None else None,
            raw=raw,
        )
        if id(node) in self._active:
            self.problems.append((_mark(self.file, node.start_mark), "an alias refers to itself"))
            return None
        self._active.add(id(node))
        try:
            if isinstance(node, yaml.MappingNode):
                return self._mapping(node, path)
            if isinstance(node, yaml.SequenceNode):
                return [self.build(item, (*path, index)) for index, item in enumerate(node.value)]
            return self._scalar(node)
        finally:
            self._active.discard(id(node))

    def _scalar(self, node: yaml.Node) -> Any:
        try:
            return self._constructor.construct_object(node, deep=True)
        except yaml.MarkedYAMLError as exc:
            self.problems.append((_mark(self.file, exc.problem_mark or node.start_mark), str(exc.problem)))
            # The text as written, so that the same spot does not also fail as "found null".
            return node.value

    def _mapping(self, node: yaml.MappingNode, path: DataPath) -> dict[str, Any]:
        result: dict[str, Any] = {}
        merged: dict[str, Any] = {}
        seen: dict[str, int] = {}
        # Merged entries first, so that explicit keys override them (positions included).
        for key_node, value_node in node.value:
            if key_node.tag == _MERGE_TAG:
                merged.update(self._merge(value_node, path))
        for key_node, value_node in node.value:
            if key_node.tag == _MERGE_TAG:
                continue
            if not isinstance(key_node, yaml.ScalarNode) or key_node.value == "":
                self.problems.append(
                    (
                        _mark(self.file, key_node.start_mark),
                        "expected a plain word as key, found a complex key",
                    )
                )
                continue
            name = str(key_node.value)
            line = key_node.start_mark.line + 1
            if name in seen:
                where = format_path((*path, name))
                self.problems.append(
                    (
                        _mark(self.file, key_node.start_mark),
                        f"duplicate key {where!r}: first set on line {seen[name]}, again on line {line}; "
                        "a key may appear once per mapping",
                    )
                )
                continue
            seen[name] = line
            result[name] = self.build(value_node, (*path, name), key_node)
        return {**merged, **result}

    def _merge(self, node: yaml.Node, path: DataPath) -> dict[str, Any]:
        sources = node.value if isinstance(node, yaml.SequenceNode) else [node]
        merged: dict[str, Any] = {}
        for source in reversed(sources):
            if not isinstance(source, yaml.MappingNode):
                self.problems.append(
                    (_mark(self.file, source.start_mark), "'<<' expects a mapping or a list of them")
                )
                continue
            merged.update(self._mapping(source, path))
        return merged
