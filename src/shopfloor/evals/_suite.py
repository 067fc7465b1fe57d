"""Suites: a YAML file naming the agent, the dataset(s), the scorers with their options, repeats and
gates. Loaded with the project's bounded YAML loader; every problem names file:line:column."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from shopfloor._registry import Registry
from shopfloor.errors import ShopfloorError, SourceLocation, SpecError
from shopfloor.evals._scorer import Scorer, ScorerEnv, eval_scorers
from shopfloor.evals._sources import SourceEntry, dataset_sources
from shopfloor.spec import (
    DataPath,
    Int,
    Number,
    Problem,
    YamlDocument,
    describe_value,
    format_path,
    load_yaml_file,
    validation_problems,
)

__all__ = ["GateSpec", "LoadedSuite", "ScorerEntry", "SuiteSpec", "build_scorers", "load_suite"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ScorerEntry(BaseModel):
    """A scorer's type and its options (checked against that type's own options model)."""

    model_config = ConfigDict(extra="allow")

    type: str = Field(description="a scorer type: exact, numeric, trajectory, custom, judged...")


class GateSpec(_Strict):
    metric: str
    #: what of the metric is compared: its mean, the share of items that pass, pass@k or pass^k
    stat: Literal["mean", "pass_rate", "pass@k", "pass^k"] = "mean"
    min: Number | None = None
    max: Number | None = None
    #: the largest drop of ``stat`` from the baseline evaluation (``--baseline RUN``)
    max_regression: Number | None = Field(None, ge=0)
    #: only the items with this tag
    tag: str | None = None
    #: critical: fails closed (a broken item or a missing metric fails it); error: fails; warn: reported only
    level: Literal["critical", "error", "warn"] = "error"


class SuiteSpec(_Strict):
    name: str = Field(min_length=1, max_length=128)
    description: str = ""
    #: the agent directory (relative to the suite file); ``--agent`` overrides it
    agent: str | None = None
    #: a model reference overriding the agent's; ``--model`` overrides it
    model: str | None = None
    #: dataset files (relative to the suite file) or sources (``{source: bfcl, category: ..., limit: N}``)
    dataset: str | SourceEntry | list[str | SourceEntry]
    repeat: Int = Field(1, ge=1, le=100)
    concurrency: Int = Field(1, ge=1, le=64)
    #: seconds an item's run may take before it is cancelled and recorded as a timeout
    timeout: Number | None = Field(None, gt=0)
    #: only the items with one of these tags
    tags: list[str] = Field(default_factory=list)
    scorers: list[ScorerEntry] = Field(min_length=1)
    gates: list[GateSpec] = Field(default_factory=list)


@dataclass(frozen=True, kw_only=True)
class LoadedSuite:
    spec: SuiteSpec
    path: Path
    #: ``sha256:<hex>`` of the suite file
    digest: str
    #: the scorers' options as written (stored with the evaluation, so it can be scored again)
    scorer_configs: tuple[dict[str, Any], ...]

    @property
    def base_dir(self) -> Path:
        return self.path.parent

    def datasets(self) -> list[Path | dict[str, Any]]:
        """Each dataset: a file's resolved path, or a source's entry (``{"source": ..., options}``)."""
        names = self.spec.dataset if isinstance(self.spec.dataset, list) else [self.spec.dataset]
        return [
            (self.base_dir / name).resolve() if isinstance(name, str) else name.model_dump() for name in names
        ]

    def agent_path(self) -> Path | None:
        return (self.base_dir / self.spec.agent).resolve() if self.spec.agent else None


def _sorted(problems: list[Problem]) -> list[Problem]:
    return sorted(dict.fromkeys(problems), key=lambda p: (p[0].line or 0, p[0].column or 0, p[1]))


def build_scorers(
    configs: tuple[dict[str, Any], ...] | list[dict[str, Any]],
    env: ScorerEnv,
    *,
    registry: Registry[type[Scorer]] | None = None,
    doc: YamlDocument | None = None,
) -> list[Scorer]:
    """Scorers from their configurations; every problem at once, located in ``doc`` where given."""
    registry = registry or eval_scorers()
    problems: list[Problem] = []
    scorers: list[Scorer] = []

    def where(path: DataPath, at_key: bool = False) -> SourceLocation:
        return doc.location(path, at_key=at_key) if doc is not None else SourceLocation(file="(suite)")

    for index, config in enumerate(configs):
        base: DataPath = ("scorers", index)
        kind = str(config.get("type"))
        if kind not in registry:
            problems.append(
                (
                    where((*base, "type")),
                    f"unknown scorer type {kind!r}; known: {', '.join(registry.names())}",
                )
            )
            continue
        cls = registry.get(kind)
        options = {k: v for k, v in config.items() if k != "type"}
        try:
            validated = cls.Options.model_validate(options)
        except ValidationError as exc:
            for error in exc.errors():
                path = (*base, *error["loc"])
                if error["type"] == "extra_forbidden":
                    known = ", ".join(cls.Options.model_fields)
                    message = f"{format_path(path)}: unknown option of scorer {kind!r}; known: {known}"
                    problems.append((where(path, True), message))
                else:
                    problems.append((where(path), f"{format_path(path)}: {error['msg']}"))
            continue
        try:
            scorers.append(cls(kind, validated, env))
        except (ShopfloorError, ValueError, ImportError) as exc:
            problems.append((where(base), f"{format_path(base)}: {exc}"))
    names = [s.name for s in scorers]
    for name in sorted({n for n in names if names.count(n) > 1}):
        problems.append((where(("scorers",)), f"two scorers make the metric {name!r}: give one a `name:`"))
    if problems:
        raise SpecError(_sorted(problems))
    return scorers


def _source_problems(spec: SuiteSpec, doc: YamlDocument) -> list[Problem]:
    """Each dataset source's name and options, checked where the suite is read (nothing is loaded)."""
    registry = dataset_sources()
    entries = spec.dataset if isinstance(spec.dataset, list) else [spec.dataset]
    problems: list[Problem] = []
    for index, entry in enumerate(entries):
        if not isinstance(entry, SourceEntry):
            continue
        base: DataPath = ("dataset", index) if isinstance(spec.dataset, list) else ("dataset",)
        if entry.source not in registry:
            known = ", ".join(registry.names())
            problems.append(
                (doc.location((*base, "source")), f"unknown dataset source {entry.source!r}; known: {known}")
            )
            continue
        cls = registry.get(entry.source)
        try:
            cls.Options.model_validate({k: v for k, v in entry.model_dump().items() if k != "source"})
        except ValidationError as exc:
            for error in exc.errors():
                path = (*base, *error["loc"])
                if error["type"] == "extra_forbidden":
                    known = ", ".join(cls.Options.model_fields)
                    message = (
                        f"{format_path(path)}: unknown option of source {entry.source!r}; known: {known}"
                    )
                    problems.append((doc.location(path, at_key=True), message))
                else:
                    problems.append((doc.location(path), f"{format_path(path)}: {error['msg']}"))
    return problems


def load_suite(path: Path | str, env: ScorerEnv | None = None) -> tuple[LoadedSuite, YamlDocument]:
    """Read and validate a suite; its scorers' options are checked too (``env`` also builds them)."""
    path = Path(path).resolve()
    doc = load_yaml_file(path)
    problems = list(doc.problems)
    if not isinstance(doc.data, dict):
        problems.append(
            (
                doc.location(()),
                f"expected a mapping (name, dataset, scorers...), found {describe_value(doc.data)}",
            )
        )
        raise SpecError(_sorted(problems))
    try:
        spec = SuiteSpec.model_validate(doc.data)
    except ValidationError as exc:
        problems.extend(validation_problems(exc, doc, SuiteSpec))
        raise SpecError(_sorted(problems)) from None
    problems += _source_problems(spec, doc)
    if problems:
        raise SpecError(_sorted(problems))
    configs = tuple(dict(entry.model_dump()) for entry in spec.scorers)
    suite = LoadedSuite(
        spec=spec,
        path=path,
        digest="sha256:" + hashlib.sha256(path.read_bytes()).hexdigest(),
        scorer_configs=configs,
    )
    if env is not None:
        build_scorers(configs, env, doc=doc)
    return suite, doc
