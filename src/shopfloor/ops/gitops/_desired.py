"""The desired state a repository declares: the YAML files directly in the controller's ``--path``.

```yaml
skills:                         # signed skills to publish to the registry (immutable; never pruned)
  - path: skills/summarise      # the skill's directory, relative to this file
releases:                       # agents to release (immutable, signed; never pruned)
  - agent: agents/analyst       # the agent's directory, relative to this file
    version: 1.2.0              # optional: the spec's version
deployments:                    # which release serves each agent
  - agent: analyst
    release: 1.2.0
    canary: {release: 1.3.0, percent: 10}   # optional
roles:                          # the policy: the shapes of config.toml's sections of the same names
  auditor: {permissions: ["audit:read"]}
bindings: [{principal: "key:ab12", role: auditor, team: research}]
limits: [{scope: "team:research", tokens_per_day: 1000000}]
routes:                         # upstream keys only as secret:NAME (a key in git is a leaked key)
  big: {upstreams: [{url: "http://10.0.0.5:8000/v1", model: llama-70b, api_key: "secret:BIG"}]}
aliases: {default: big}
```

Files are read in name order and merged; the same deployment declared twice is an error naming both
places. Every error names the file (relative to the repository) and line. Agents' own directories sit
below ``--path``, so their ``agent.yaml`` is never read as desired state.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from shopfloor.config import BindingSettings, LimitSettings, RoleSettings, RouteSettings
from shopfloor.errors import SourceLocation, SpecError
from shopfloor.spec import YamlDocument, compose_yaml, read_yaml_file, validation_problems

__all__ = [
    "CanaryDecl",
    "DeploymentDecl",
    "DesiredState",
    "ReleaseDecl",
    "SkillDecl",
    "policy_key",
    "read_desired",
]

_VERSION = r"^[A-Za-z0-9][A-Za-z0-9._+-]{0,63}$"
_NAME = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$"


class _Decl(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SkillDecl(_Decl):
    path: str = Field(min_length=1, max_length=512, description="the skill's directory, relative")


class ReleaseDecl(_Decl):
    agent: str = Field(min_length=1, max_length=512, description="the agent's directory, relative")
    version: str | None = Field(None, pattern=_VERSION)


class CanaryDecl(_Decl):
    release: str = Field(pattern=_VERSION)
    percent: int = Field(ge=1, le=99)


class DeploymentDecl(_Decl):
    agent: str = Field(pattern=_NAME)
    release: str = Field(pattern=_VERSION)
    canary: CanaryDecl | None = None


class _File(_Decl):
    skills: list[SkillDecl] = Field(default_factory=list, max_length=1000)
    releases: list[ReleaseDecl] = Field(default_factory=list, max_length=1000)
    deployments: list[DeploymentDecl] = Field(default_factory=list, max_length=1000)
    roles: dict[str, RoleSettings] = Field(default_factory=dict, max_length=1000)
    bindings: list[BindingSettings] = Field(default_factory=list, max_length=10_000)
    limits: list[LimitSettings] = Field(default_factory=list, max_length=10_000)
    routes: dict[str, RouteSettings] = Field(default_factory=dict, max_length=1000)
    aliases: dict[str, str] = Field(default_factory=dict, max_length=1000)


@dataclass(frozen=True, kw_only=True)
class Placed:
    """A declaration and where it was written."""

    where: SourceLocation
    #: the directory of the file that declared it (relative paths start here)
    base: Path


@dataclass(frozen=True, kw_only=True)
class DesiredState:
    skills: list[tuple[SkillDecl, Placed]]
    releases: list[tuple[ReleaseDecl, Placed]]
    deployments: dict[str, tuple[DeploymentDecl, Placed]]
    #: the policy file's content (``config.POLICY_SECTIONS``) and where each object was declared
    policy: dict[str, Any]
    policy_where: dict[str, SourceLocation]


_KINDS = {"roles": "Role", "routes": "Route", "aliases": "Alias"}


def policy_key(section: str, item: Any, name: str | None = None) -> str:
    """A policy object's name in reports: ``Role/auditor``, ``Binding/key:ab12->auditor@research``."""
    if section == "bindings":
        return f"Binding/{item['principal']}->{item['role']}@{item.get('team') or '*'}"
    if section == "limits":
        return f"Limit/{item['scope']}"
    return f"{_KINDS[section]}/{name}"


def _policy(
    parsed: _File, doc: YamlDocument, policy: dict[str, Any], where: dict[str, SourceLocation]
) -> list[tuple[SourceLocation, str]]:
    problems: list[tuple[SourceLocation, str]] = []
    for section in ("roles", "routes", "aliases"):
        for name, value in getattr(parsed, section).items():
            at = doc.location((section, name), at_key=True)
            key = policy_key(section, None, name)
            if key in where:
                problems.append((at, f"{key} is declared twice (first at {where[key]})"))
                continue
            where[key] = at
            dumped = value if isinstance(value, str) else value.model_dump(mode="json", exclude_unset=True)
            policy.setdefault(section, {})[name] = dumped
    for section in ("bindings", "limits"):
        for i, value in enumerate(getattr(parsed, section)):
            dumped = value.model_dump(mode="json", exclude_unset=True)
            key = policy_key(section, dumped)
            if key in where:
                problems.append(
                    (doc.location((section, i)), f"{key} is declared twice (first at {where[key]})")
                )
                continue
            where[key] = doc.location((section, i))
            policy.setdefault(section, []).append(dumped)
    for name, route in parsed.routes.items():
        for i, upstream in enumerate(route.upstreams):
            if upstream.api_key is not None and not upstream.api_key.startswith("secret:"):
                problems.append(
                    (
                        doc.location(("routes", name, "upstreams", i, "api_key")),
                        "an upstream key in git is a leaked key: store it with `shopfloor secrets set NAME` "
                        "and write secret:NAME",
                    )
                )
    return problems


def _read(path: Path, shown: str) -> tuple[YamlDocument, _File]:
    doc = compose_yaml(read_yaml_file(path), shown)
    if not isinstance(doc.data, dict):
        raise SpecError([(doc.location(()), "expected a mapping of skills:, releases:, deployments:, ...")])
    try:
        parsed = _File.model_validate(doc.data)
    except ValidationError as exc:
        raise SpecError(doc.problems + validation_problems(exc, doc, _File)) from None
    if doc.problems:
        raise SpecError(doc.problems)
    return doc, parsed


def read_desired(root: Path, directory: Path) -> DesiredState:
    """The desired state of the YAML files directly in ``directory`` (inside the checkout ``root``);
    SpecError with every problem of every file, located, relative to the repository."""
    problems: list[tuple[SourceLocation, str]] = []
    skills: list[tuple[SkillDecl, Placed]] = []
    releases: list[tuple[ReleaseDecl, Placed]] = []
    deployments: dict[str, tuple[DeploymentDecl, Placed]] = {}
    policy: dict[str, Any] = {}
    policy_where: dict[str, SourceLocation] = {}
    files = sorted(p for p in directory.iterdir() if p.suffix in (".yaml", ".yml") and p.is_file())
    if not files:
        shown = directory.relative_to(root).as_posix() or "."
        raise SpecError([(SourceLocation(file=shown), "no desired state here: expected *.yaml files")])
    for path in files:
        shown = path.relative_to(root).as_posix()
        try:
            doc, parsed = _read(path, shown)
        except SpecError as exc:
            problems.extend(exc.problems)
            continue
        problems.extend(_policy(parsed, doc, policy, policy_where))
        for i, skill in enumerate(parsed.skills):
            skills.append((skill, Placed(where=doc.location(("skills", i)), base=path.parent)))
        for i, release in enumerate(parsed.releases):
            releases.append((release, Placed(where=doc.location(("releases", i)), base=path.parent)))
        for i, deployment in enumerate(parsed.deployments):
            where = doc.location(("deployments", i))
            if deployment.agent in deployments:
                first = deployments[deployment.agent][1].where
                problems.append((where, f"agent {deployment.agent!r} is deployed twice (first at {first})"))
                continue
            if deployment.canary is not None and deployment.canary.release == deployment.release:
                problems.append((where, f"the canary of {deployment.agent!r} is its stable release"))
            deployments[deployment.agent] = (deployment, Placed(where=where, base=path.parent))
    if problems:
        raise SpecError(problems)
    return DesiredState(
        skills=skills, releases=releases, deployments=deployments, policy=policy, policy_where=policy_where
    )
