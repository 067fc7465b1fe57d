"""The composition root: what a Shopfloor process runs with, built once from ``Settings``.

``compose(settings)`` puts the layers together (the spec layer's reference resolvers
with the skills layer's over them, the validators of every kind of file) and the
command line, the worker and the server each call it once, then pass the ``Services``
down explicitly. Nothing is found by scanning packages or registered as a side effect
of an import, so what a process can do is what this module wrote down.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from shopfloor._registry import Registry
from shopfloor.agent import BuiltinFactory, builtin_tools
from shopfloor.config import Settings
from shopfloor.diagnostics import Check, CheckFn, doctor_checks
from shopfloor.models import ProviderFactory, model_providers
from shopfloor.sandbox import Sandbox, sandbox_backends, sandbox_checks
from shopfloor.skills import skill_checks, skill_ref_resolvers, skill_validator
from shopfloor.spec import (
    LoadedSpec,
    RefResolver,
    ValidationReport,
    Validator,
    agent_validator,
    load_spec,
    spec_resolvers,
    validate_path,
)
from shopfloor.telemetry import ExporterFactory, telemetry_exporters

__all__ = ["Services", "agent_resolvers", "compose"]


@dataclass(frozen=True, kw_only=True)
class Services:
    """A process's services; ``compose`` makes them."""

    settings: Settings
    #: what each kind of reference adds to an agent's digest
    resolvers: Mapping[str, RefResolver]
    #: what ``shopfloor validate`` checks, first match wins
    validators: tuple[Validator, ...]
    #: model providers by reference prefix (``openai``, ``local``, ``test``...)
    models: Registry[ProviderFactory]
    #: the ``builtin:NAME`` tools an agent spec may grant
    builtins: Registry[BuiltinFactory]
    #: sandbox backends by name (``bwrap``, ``landlock``, ``gvisor``, ``none``)
    sandboxes: Registry[type[Sandbox]]
    #: where traces and metrics go besides the local store (OTLP over HTTP or gRPC)
    exporters: Registry[ExporterFactory]
    #: the lines of ``shopfloor doctor``
    checks: Registry[Check | CheckFn]

    def load_spec(self, path: Path | str) -> LoadedSpec:
        """Load an agent spec, its references resolved by this process's resolvers."""
        return load_spec(path, resolvers=self.resolvers)

    def validate(self, path: Path | str) -> ValidationReport:
        """Validate an agent spec or a skill directory."""
        return validate_path(path, self.validators)


def agent_resolvers() -> dict[str, RefResolver]:
    """What each kind of reference adds to an agent's digest: the spec layer's resolvers, with the
    skills layer's over them (a skill directory digests as its manifest)."""
    return {**spec_resolvers(), **skill_ref_resolvers()}


def compose(settings: Settings) -> Services:
    """Build the services of a process from its settings."""
    resolvers = agent_resolvers()
    checks = doctor_checks()
    for name, check in {**sandbox_checks(), **skill_checks()}.items():
        checks.register(name, check)
    return Services(
        settings=settings,
        resolvers=resolvers,
        validators=(skill_validator, agent_validator(resolvers)),
        models=model_providers(),
        builtins=builtin_tools(),
        sandboxes=sandbox_backends(),
        exporters=telemetry_exporters(),
        checks=checks,
    )
