"""Agent Skills: load (strict or compatibility mode), sign and verify, publish, and run as tools.

A skill is a directory in the open Agent Skills format (``SKILL.md`` with YAML front matter,
``scripts/``, ``references/``, ``assets/``) plus Shopfloor's sidecar ``shopfloor.yaml`` (entry
point, runtime, JSON Schemas, dependencies, sandbox needs) and signature ``shopfloor.sig``.

``skill_validator`` teaches ``validate_path`` about skill directories and
``skill_ref_resolvers()`` makes an agent's digest use a skill directory's manifest digest;
the composition root (``shopfloor.runtime.compose``) hands both to the spec layer.
"""

from shopfloor.skills._builtin import BUILTIN_DIR, builtin_skill_dir, builtin_skill_names
from shopfloor.skills._deps import NODE_MODULES_MOUNT, SkillEnvironment, environments_dir, prepare_environment
from shopfloor.skills._doctor import skill_checks
from shopfloor.skills._execute import SKILL_MOUNT, SkillRun, effective_policy, run_entry_point
from shopfloor.skills._frontmatter import FrontMatter, Problem, find_skill_md, read_front_matter
from shopfloor.skills._manifest import SIGNATURE_FILE, FileEntry, Manifest, build_manifest
from shopfloor.skills._registry import PublishedSkill, SkillRegistry, parse_ref
from shopfloor.skills._resolve import resolve_skill, skill_tools
from shopfloor.skills._scaffold import new_skill
from shopfloor.skills._sidecar import SIDECAR, SkillConfig, SkillDependencies, SkillSandboxNeeds, load_sidecar
from shopfloor.skills._signing import (
    BUILTIN_PUBLIC_KEY_FILE,
    KeyPair,
    SignatureInfo,
    TrustPolicy,
    fingerprint,
    generate_key,
    open_skill,
    sign_payload,
    sign_skill,
    verify_payload,
    verify_skill,
)
from shopfloor.skills._skill import Skill, load_skill
from shopfloor.skills._tool import SkillReferenceTool, SkillTool
from shopfloor.skills._validate import skill_ref_resolvers, skill_validator, validate_skill_dir

__all__ = [
    "BUILTIN_DIR",
    "BUILTIN_PUBLIC_KEY_FILE",
    "NODE_MODULES_MOUNT",
    "SIDECAR",
    "SIGNATURE_FILE",
    "SKILL_MOUNT",
    "FileEntry",
    "FrontMatter",
    "KeyPair",
    "Manifest",
    "Problem",
    "PublishedSkill",
    "SignatureInfo",
    "Skill",
    "SkillConfig",
    "SkillDependencies",
    "SkillEnvironment",
    "SkillReferenceTool",
    "SkillRegistry",
    "SkillRun",
    "SkillSandboxNeeds",
    "SkillTool",
    "TrustPolicy",
    "build_manifest",
    "builtin_skill_dir",
    "builtin_skill_names",
    "effective_policy",
    "environments_dir",
    "find_skill_md",
    "fingerprint",
    "generate_key",
    "load_sidecar",
    "load_skill",
    "new_skill",
    "open_skill",
    "parse_ref",
    "prepare_environment",
    "read_front_matter",
    "resolve_skill",
    "run_entry_point",
    "sign_payload",
    "sign_skill",
    "skill_checks",
    "skill_ref_resolvers",
    "skill_tools",
    "skill_validator",
    "validate_skill_dir",
    "verify_payload",
    "verify_skill",
]
