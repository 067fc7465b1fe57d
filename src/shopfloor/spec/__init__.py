"""Declarative agent specs (agent.yaml): models, loading with file:line errors, digests.

Extension points, passed in by the caller: ``RefResolvers`` decide what a reference of a
kind (``skill-path``, ``skill-digest``...) contributes to an agent's digest, and
``Validator`` values teach ``validate_path`` a new kind of file.
"""

from shopfloor.spec._digest import (
    RefResolver,
    RefResolvers,
    SpecReference,
    canonical_json,
    compute_digest,
    digest_document,
    file_digest,
    resolve_reference,
    seed_path,
    spec_references,
    spec_resolvers,
    tree_digest,
)
from shopfloor.spec._loader import (
    SPEC_FILENAMES,
    LoadedSpec,
    find_spec_file,
    load_spec,
    parse_spec,
    spec_digest,
)
from shopfloor.spec._model import (
    AgentSpec,
    Limits,
    Mount,
    Permissions,
    SandboxPolicySpec,
    SkillRef,
    ToolSpec,
    WorkspaceSpec,
)
from shopfloor.spec._validators import (
    ValidateFn,
    ValidationReport,
    Validator,
    agent_validator,
    is_agent_spec,
    is_skill_dir,
    validate_path,
)
from shopfloor.spec._yaml import DataPath, NodePosition, YamlDocument, compose_yaml, format_path

__all__ = [
    "SPEC_FILENAMES",
    "AgentSpec",
    "DataPath",
    "Limits",
    "LoadedSpec",
    "Mount",
    "NodePosition",
    "Permissions",
    "RefResolver",
    "RefResolvers",
    "SandboxPolicySpec",
    "SkillRef",
    "SpecReference",
    "ToolSpec",
    "ValidateFn",
    "ValidationReport",
    "Validator",
    "WorkspaceSpec",
    "YamlDocument",
    "agent_validator",
    "canonical_json",
    "compose_yaml",
    "compute_digest",
    "digest_document",
    "file_digest",
    "find_spec_file",
    "format_path",
    "is_agent_spec",
    "is_skill_dir",
    "load_spec",
    "parse_spec",
    "resolve_reference",
    "seed_path",
    "spec_digest",
    "spec_references",
    "spec_resolvers",
    "tree_digest",
    "validate_path",
]
