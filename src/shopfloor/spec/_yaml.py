"""YAML to plain data, keeping where every key and value was written.

``yaml.safe_load`` forgets positions and silently keeps the last of two
duplicate keys, so a spec is composed into nodes first and turned into data
here: each mapping key and each value remembers its line and column, and
problems (duplicate keys, odd keys, unknown tags) are collected, not raised
one at a time, so a user sees them all at once.

Every YAML file Shopfloor reads (agent specs, skill sidecars, SKILL.md front matter,
sandbox policies) goes through this module, and all of it is bounded by
:class:`YamlLimits`: the size is checked before parsing, the nesting depth and the
number of aliases and of values on libyaml's event stream before anything is built (a flat loop, so
990 nested ``[`` are an error, not a RecursionError), and what aliases and merge keys
(``<<``) expand to while the data is built. Each refusal names file:line and the limit.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import yaml

from shopfloor.errors import SourceLocation, SpecError

__all__ = [
    "YAML_LIMITS",
    "DataPath",
    "NodePosition",
    "Problem",
    "YamlDocument",
    "YamlLimits",
    "check_yaml",
    "compose_yaml",
    "format_path",
    "load_yaml_file",
    "read_yaml_file",
]

DataPath = tuple[str | int, ...]
Problem = tuple[SourceLocation, str]

_MERGE_TAG = "tag:yaml.org,2002:merge"
# libyaml's parser gives the same nodes and marks, several times faster.
_LOADER: type[yaml.SafeLoader] | type[yaml.CSafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


@dataclass(frozen=True, kw_only=True)
class YamlLimits:
    """Bounds on one YAML document; real specs and skills stay far below each."""

    #: bytes of the file (checked before parsing)
    max_bytes: int = 1 << 20
    #: nesting of mappings and sequences, as written and as expanded through aliases
    max_depth: int = 64
    #: alias uses (``*name``) in the text
    max_aliases: int = 256
    #: values (keys included) in the text, and values built counting every copy an alias or a merge
    #: key makes ("billion laughs")
    max_values: int = 20_000
    #: mappings merged in through ``<<``, counting repeats (merge keys nest exponentially too)
    max_merges: int = 1_000


YAML_LIMITS = YamlLimits()


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


class _Mark(Protocol):
    """A parser position: PyYAML's ``Mark`` or libyaml's."""

    line: int
    column: int


def _mark(file: str, mark: _Mark | None) -> SourceLocation:
    if mark is None:
        return SourceLocation(file=file)
    return SourceLocation(file=file, line=mark.line + 1, column=mark.column + 1)


def _limit(file: str, mark: _Mark | None, message: str) -> SpecError:
    return SpecError([(_mark(file, mark), message)])


def _over_size(file: str, raw: bytes, limits: YamlLimits) -> SpecError:
    """The size error, at the line where the limit is crossed."""
    line = raw.count(b"\n", 0, limits.max_bytes) + 1
    return SpecError(
        [(SourceLocation(file=file, line=line), f"over the YAML size limit of {limits.max_bytes} bytes")]
    )


def read_yaml_file(path: Path, limits: YamlLimits = YAML_LIMITS) -> str:
    """The text of a YAML file, read only up to the size limit; SpecError if it is larger, unreadable
    or not UTF-8."""
    try:
        with path.open("rb") as handle:
            raw = handle.read(limits.max_bytes + 1)
    except OSError as exc:
        raise SpecError([(SourceLocation(file=str(path)), f"cannot read: {exc.strerror}")]) from None
    if len(raw) > limits.max_bytes:
        raise _over_size(str(path), raw, limits)
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        raise SpecError(
            [(SourceLocation(file=str(path), line=line), f"not UTF-8 text (byte {exc.start})")]
        ) from None


def check_yaml(text: str, file: str, limits: YamlLimits = YAML_LIMITS) -> bool:
    """Refuse text over the size, depth, alias or value limits, before anything is built.

    Runs over libyaml's events in a flat loop, so its cost is linear in the text. A syntax
    error ends the check quietly (the parse that follows reports it): the result is False
    when the check stopped there, True when it saw the whole text.
    """
    # A character is at least one byte: a long text is refused without encoding all of it.
    raw = text[: limits.max_bytes + 1].encode("utf-8", "surrogatepass")
    if len(raw) > limits.max_bytes:
        raise _over_size(file, raw, limits)
    loader = _LOADER(text)
    depth = aliases = values = 0
    try:
        while loader.check_event():
            event = loader.get_event()
            if isinstance(event, yaml.NodeEvent) and not isinstance(event, yaml.AliasEvent):
                values += 1
                if values > limits.max_values:
                    raise _limit(
                        file, event.start_mark, f"more than the YAML limit of {limits.max_values} values"
                    )
            if isinstance(event, yaml.CollectionStartEvent):
                depth += 1
                if depth > limits.max_depth:
                    raise _limit(
                        file,
                        event.start_mark,
                        f"nested deeper than the YAML depth limit of {limits.max_depth}",
                    )
            elif isinstance(event, yaml.CollectionEndEvent):
                depth -= 1
            elif isinstance(event, yaml.AliasEvent):
                aliases += 1
                if aliases > limits.max_aliases:
                    raise _limit(
                        file,
                        event.start_mark,
                        f"more aliases (*{event.anchor}) than the YAML limit of {limits.max_aliases}",
                    )
    except yaml.YAMLError:
        return False
    finally:
        loader.dispose()
    return True


def load_yaml_file(path: Path, limits: YamlLimits = YAML_LIMITS) -> YamlDocument:
    """Read and compose a YAML file within ``limits`` (see ``compose_yaml``)."""
    return compose_yaml(read_yaml_file(path, limits), str(path), limits)


def compose_yaml(text: str, file: str, limits: YamlLimits = YAML_LIMITS) -> YamlDocument:
    """Parse one YAML document within ``limits``; raise SpecError for text that is not YAML, is empty
    or breaks a limit."""
    check_yaml(text, file, limits)
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
    builder = _Builder(file, limits)
    data = builder.build(root, ())
    return YamlDocument(file=file, data=data, positions=builder.positions, problems=builder.problems)


class _Builder:
    def __init__(self, file: str, limits: YamlLimits) -> None:
        self.file = file
        self.limits = limits
        self.positions: dict[DataPath, NodePosition] = {}
        self.problems: list[Problem] = []
        self._constructor = yaml.SafeLoader("")
        self._active: set[int] = set()
        self._count = 0
        self._merges = 0
        self._depth = 0

    def _over(self, path: DataPath, message: str) -> SpecError:
        """A limit hit while expanding aliases or merge keys: at the top-level entry that expands."""
        pos = self.positions.get(path[:1])
        where = SourceLocation(file=self.file, line=pos.line if pos else 1, column=pos.column if pos else 1)
        return SpecError([(where, f"{format_path(path) or 'the document'}: {message}")])

    def build(self, node: yaml.Node, path: DataPath, key: yaml.Node | None = None) -> Any:
        self._count += 1
        if self._count > self.limits.max_values:
            raise self._over(
                path,
                f"more than the YAML limit of {self.limits.max_values} values "
                "(each copy an alias makes counts)",
            )
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
        nested = isinstance(node, yaml.CollectionNode)
        self._depth += nested
        try:
            if self._depth > self.limits.max_depth:
                # Reached through aliases: the text itself passed the same check.
                raise self._over(
                    path, f"aliases nest it deeper than the YAML depth limit of {self.limits.max_depth}"
                )
            if isinstance(node, yaml.MappingNode):
                return self._mapping(node, path)
            if isinstance(node, yaml.SequenceNode):
                return [self.build(item, (*path, index)) for index, item in enumerate(node.value)]
            return self._scalar(node)
        finally:
            self._depth -= nested
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
            self._merges += 1
            if self._merges > self.limits.max_merges:
                raise self._over(
                    path,
                    f"merge keys ('<<') expand more mappings than the YAML limit of {self.limits.max_merges}",
                )
            if id(source) in self._active:
                self.problems.append(
                    (_mark(self.file, source.start_mark), "a merge key refers to its own mapping")
                )
                continue
            self._active.add(id(source))
            self._depth += 1
            try:
                if self._depth > self.limits.max_depth:
                    raise self._over(
                        path,
                        f"merge keys nest it deeper than the YAML depth limit of {self.limits.max_depth}",
                    )
                merged.update(self._mapping(source, path))
            finally:
                self._depth -= 1
                self._active.discard(id(source))
        return merged
