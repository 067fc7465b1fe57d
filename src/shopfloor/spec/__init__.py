"""Declarative agent specs (agent.yaml): models, loading with file:line errors, digests.

Extension points: ``register_ref_resolver(kind, fn)`` decides what a reference of a
kind (``skill-path``, ``skill-digest``...) contributes to an agent's digest, and
``register_validator(predicate, fn)`` teaches ``shopfloor validate`` a new kind of file.
"""

from shopfloor.spec._digest import (
    RefResolver,
    SpecReference,
    canonical_json,
    compute_digest,
    digest_document,
    file_digest,
    register_ref_resolver,
    resolve_reference,
    seed_path,
    spec_references,
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
    Isolation,
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
    is_agent_spec,
    is_skill_dir,
    register_validator,
    validate_path,
)
from shopfloor.spec._yaml import (
    YAML_LIMITS,
    DataPath,
    NodePosition,
    YamlDocument,
    YamlLimits,
    check_yaml,
    compose_yaml,
    format_path,
    load_yaml_file,
    read_yaml_file,
)

__all__ = [
    "SPEC_FILENAMES",
    "YAML_LIMITS",
    "AgentSpec",
    "DataPath",
    "Isolation",
    "Limits",
    "LoadedSpec",
    "Mount",
    "NodePosition",
    "Permissions",
    "RefResolver",
    "SandboxPolicySpec",
    "SkillRef",
    "SpecReference",
    "ToolSpec",
    "ValidateFn",
    "ValidationReport",
    "WorkspaceSpec",
    "YamlDocument",
    "YamlLimits",
    "canonical_json",
    "check_yaml",
    "compose_yaml",
    "compute_digest",
    "digest_document",
    "file_digest",
    "find_spec_file",
    "format_path",
    "is_agent_spec",
    "is_skill_dir",
    "load_spec",
    "load_yaml_file",
    "parse_spec",
    "read_yaml_file",
    "register_ref_resolver",
    "register_validator",
    "resolve_reference",
    "seed_path",
    "spec_digest",
    "spec_references",
    "tree_digest",
    "validate_path",
]
