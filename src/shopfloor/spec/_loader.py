"""Load ``agent.yaml``: every problem at once, each with file:line:column and what is expected."""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path

from pydantic import ValidationError

from shopfloor.errors import ShopfloorError, SourceLocation, SpecError
from shopfloor.spec._digest import (
    RefResolvers,
    SpecReference,
    compute_digest,
    digest_document,
    resolve_reference,
    spec_references,
)
from shopfloor.spec._messages import describe_value, validation_problems
from shopfloor.spec._model import AgentSpec
from shopfloor.spec._yaml import DataPath, Problem, YamlDocument, compose_yaml, format_path, read_yaml_file

__all__ = [
    "SPEC_FILENAMES",
    "LoadedSpec",
    "ParsedSpecs",
    "find_spec_file",
    "load_spec",
    "parse_spec",
    "spec_digest",
]

SPEC_FILENAMES = ("agent.yaml", "agent.yml")


@dataclass(frozen=True, kw_only=True)
class LoadedSpec:
    spec: AgentSpec
    #: the YAML file, absolute
    path: Path
    #: the directory that relative references (tool files, skills, seeds) start from
    base_dir: Path
    #: ``sha256:<hex>`` of the spec and everything it references
    digest: str
    #: where each part was written, for errors found after loading (a tool that fails to import)
    document: YamlDocument | None = field(default=None, repr=False, compare=False)

    def location(self, where: DataPath) -> SourceLocation:
        """The file:line:column of a part of the spec, e.g. ``("tools", 0, "source")``."""
        if self.document is None:
            return SourceLocation(file=str(self.path))
        return self.document.location(where)


def find_spec_file(path: Path | str) -> Path:
    """``path`` itself if it is a file, else the agent.yaml inside the directory."""
    path = Path(path)
    if path.is_dir():
        for name in SPEC_FILENAMES:
            if (path / name).is_file():
                return path / name
        raise SpecError([(SourceLocation(file=str(path)), "no agent.yaml in this directory")])
    if not path.exists():
        raise SpecError(
            [(SourceLocation(file=str(path)), "no such file or directory: expected an agent.yaml")]
        )
    return path


def _sorted(problems: list[Problem]) -> list[Problem]:
    unique = list(dict.fromkeys(problems))
    return sorted(unique, key=lambda item: (item[0].line or 0, item[0].column or 0, item[1]))


def _validate(doc: YamlDocument) -> AgentSpec:
    problems = list(doc.problems)
    if not isinstance(doc.data, dict):
        allowed = ", ".join(AgentSpec.model_fields)
        problems.append(
            (
                doc.location(()),
                f"expected a mapping of keys ({allowed}) at the top level, found {describe_value(doc.data)}",
            )
        )
        raise SpecError(_sorted(problems))
    try:
        spec = AgentSpec.model_validate(doc.data)
    except ValidationError as exc:
        problems.extend(validation_problems(exc, doc, AgentSpec))
        raise SpecError(_sorted(problems)) from None
    if problems:
        raise SpecError(_sorted(problems))
    return spec


def _resolve(spec: AgentSpec, doc: YamlDocument, base_dir: Path, resolvers: RefResolvers) -> str:
    resolved: list[tuple[SpecReference, str]] = []
    problems: list[Problem] = []
    for ref in spec_references(spec):
        try:
            resolved.append((ref, resolve_reference(ref, base_dir, resolvers)))
        except (OSError, ValueError, ShopfloorError) as exc:
            problems.append((doc.location(ref.where), f"{format_path(ref.where)}: {exc}"))
    if problems:
        raise SpecError(_sorted(problems))
    return digest_document(spec, resolved)


def parse_spec(
    text: str,
    *,
    file: str = "agent.yaml",
    references: tuple[Path, RefResolvers] | None = None,
) -> tuple[AgentSpec, str]:
    """Validate spec text; with ``references`` (the base directory and the resolvers) also resolve
    its references. Returns the spec and its digest (without ``references``, references are not
    checked and the digest covers the spec alone)."""
    spec, digest, _ = _parse(text, file, references)
    return spec, digest


class ParsedSpecs:
    """Agent specs parsed and validated once, by file and text: a process that starts many runs of one
    agent loaded its YAML twice a run (to start it, then in the workflow that runs it), and composing
    and validating the YAML was ~80% of a load. The references are still resolved at every load, so the
    digest always covers what they hold now. The specs are frozen models, safe to share; only specs
    that validated are kept, the ``size`` used most recently."""

    def __init__(self, *, size: int = 256) -> None:
        self._size = size
        self._lock = threading.Lock()
        self._parsed: OrderedDict[tuple[str, str], tuple[AgentSpec, YamlDocument]] = OrderedDict()

    def parse(self, text: str, file: str) -> tuple[AgentSpec, YamlDocument]:
        """The spec ``text`` (from ``file``) is, and its document; ``SpecError`` where it is invalid."""
        key = (file, text)
        with self._lock:
            found = self._parsed.get(key)
            if found is not None:
                self._parsed.move_to_end(key)
                return found
        doc = compose_yaml(text, file)
        parsed = (_validate(doc), doc)
        with self._lock:
            self._parsed[key] = parsed
            while len(self._parsed) > self._size:
                self._parsed.popitem(last=False)
        return parsed


def _parse(
    text: str, file: str, references: tuple[Path, RefResolvers] | None, parsed: ParsedSpecs | None = None
) -> tuple[AgentSpec, str, YamlDocument]:
    if parsed is not None:
        spec, doc = parsed.parse(text, file)
    else:
        doc = compose_yaml(text, file)
        spec = _validate(doc)
    if references is None:
        return spec, digest_document(spec, []), doc
    base_dir, resolvers = references
    return spec, _resolve(spec, doc, base_dir, resolvers), doc


def load_spec(path: Path | str, *, resolvers: RefResolvers, parsed: ParsedSpecs | None = None) -> LoadedSpec:
    """Read and validate an agent spec (the file, or a directory holding agent.yaml); ``resolvers``
    give the digest of each kind of reference (``spec_resolvers()``, or the composition root's);
    ``parsed``: the specs parsed already (the composition root's), where the same text is not parsed again.

    Raises SpecError listing every problem, sorted by line, each with its location.
    """
    file = find_spec_file(path)
    text = read_yaml_file(file)
    base_dir = file.parent.resolve()
    spec, digest, doc = _parse(text, str(file), (base_dir, resolvers), parsed)
    return LoadedSpec(spec=spec, path=file.resolve(), base_dir=base_dir, digest=digest, document=doc)


def spec_digest(loaded: LoadedSpec, resolvers: RefResolvers) -> str:
    """Recompute the digest from the spec and the current content of what it references."""
    return compute_digest(loaded.spec, loaded.base_dir, resolvers)
