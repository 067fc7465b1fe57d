"""The local registry: publish, list, show, resolve by version and digest; a changed version is refused."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from shopfloor.config import Settings
from shopfloor.errors import SkillRegistryError, ToolExecutionError
from shopfloor.skills import (
    BUILTIN_DIR,
    KeyPair,
    SkillRegistry,
    TrustPolicy,
    open_skill,
    parse_ref,
    resolve_skill,
    sign_skill,
    skill_tools,
)
from shopfloor.spec import AgentSpec, SandboxPolicySpec, SkillRef
from shopfloor.tools import ToolContext


@pytest.fixture
def registry(sql_url: str, settings: Settings, key: KeyPair, policy: TrustPolicy) -> Iterator[SkillRegistry]:
    registry = SkillRegistry(sql_url, settings.home / "skills", policy)
    yield registry
    registry.close()


def _bump(skill_dir: Path, version: str) -> None:
    md = skill_dir / "SKILL.md"
    md.write_text(md.read_text().replace('version: "0.1.0"', f'version: "{version}"'))


def test_parse_ref() -> None:
    assert parse_ref("hello@1.0.0") == ("hello", "1.0.0", None)
    assert parse_ref("hello@sha256:" + "a" * 64) == ("hello", None, "sha256:" + "a" * 64)
    assert parse_ref("hello") == ("hello", None, None)
    with pytest.raises(SkillRegistryError, match="64 lowercase hex"):
        parse_ref("hello@sha256:abc")


def test_publish_show_resolve(
    registry: SkillRegistry, skill_dir: Path, key: KeyPair, policy: TrustPolicy
) -> None:
    sign_skill(skill_dir, key.private_path)
    published = registry.publish(skill_dir)
    assert (published.name, published.version, published.signer) == ("hello", "0.1.0", key.public_key)
    assert registry.publish(skill_dir) == published  # same content again: a no-op
    by_version = registry.resolve("hello@0.1.0")
    by_digest = registry.resolve(f"hello@{published.digest}")
    assert by_version == by_digest and by_version.name == "hello"
    assert by_version.parent.name == published.digest.removeprefix("sha256:")
    resolved = open_skill(by_version, policy)  # the materialised copy still verifies
    assert resolved.digest == published.digest
    assert "scripts/run.py" in registry.get("hello@0.1.0").files


def test_same_version_other_content_is_refused(
    registry: SkillRegistry, skill_dir: Path, key: KeyPair
) -> None:
    sign_skill(skill_dir, key.private_path)
    registry.publish(skill_dir)
    (skill_dir / "scripts" / "run.py").write_text('print(\'{"result": "changed"}\')\n')
    sign_skill(skill_dir, key.private_path)
    with pytest.raises(SkillRegistryError, match="already published with other content"):
        registry.publish(skill_dir)
    _bump(skill_dir, "0.2.0")
    sign_skill(skill_dir, key.private_path)
    assert registry.publish(skill_dir).version == "0.2.0"
    assert [p.version for p in registry.list("hello")] == ["0.1.0", "0.2.0"]
    assert registry.get("hello").version == "0.2.0"  # a bare name is the newest version


def test_unsigned_or_versionless_skills_are_not_published(
    registry: SkillRegistry, skill_dir: Path, key: KeyPair
) -> None:
    with pytest.raises(Exception, match="not signed"):
        registry.publish(skill_dir)
    md = skill_dir / "SKILL.md"
    md.write_text(md.read_text().replace('metadata:\n  version: "0.1.0"\n', ""))
    sign_skill(skill_dir, key.private_path)
    with pytest.raises(SkillRegistryError, match="needs a version"):
        registry.publish(skill_dir)


def test_unknown_reference(registry: SkillRegistry) -> None:
    with pytest.raises(SkillRegistryError, match=r"no skill 'nope@1\.0'"):
        registry.resolve("nope@1.0")


def test_a_damaged_cache_is_materialised_again(
    registry: SkillRegistry, skill_dir: Path, key: KeyPair
) -> None:
    sign_skill(skill_dir, key.private_path)
    registry.publish(skill_dir)
    path = registry.resolve("hello@0.1.0")
    (path / "scripts" / "run.py").write_text("tampered\n")
    again = registry.resolve("hello@0.1.0")
    assert (again / "scripts" / "run.py").read_text() == (skill_dir / "scripts" / "run.py").read_text()


def test_resolve_skill_by_path_registry_and_builtin(
    skill_dir: Path, key: KeyPair, settings: Settings
) -> None:
    sign_skill(skill_dir, key.private_path)
    by_path = resolve_skill("hello", settings, base_dir=skill_dir.parent)
    registry = SkillRegistry.from_settings(settings)
    try:
        published = registry.publish(skill_dir)
    finally:
        registry.close()
    by_version = resolve_skill("hello@0.1.0", settings)
    by_digest = resolve_skill(f"hello@{published.digest}", settings)
    assert by_path.digest == by_version.digest == by_digest.digest == published.digest
    builtin = resolve_skill("data-analysis", settings)
    assert builtin.path == BUILTIN_DIR / "data-analysis"
    assert resolve_skill(f"data-analysis@{builtin.version}", settings).digest == builtin.digest
    with pytest.raises(SkillRegistryError):
        resolve_skill("data-analysis@0.0.1", settings)


async def test_skill_tools_from_an_agent_spec(skill_dir: Path, key: KeyPair, settings: Settings) -> None:
    sign_skill(skill_dir, key.private_path)
    spec = AgentSpec(
        name="analyst",
        skills=[SkillRef(ref="hello", requires_approval=True), SkillRef(ref="python")],
        sandbox=SandboxPolicySpec(timeout=7, memory="512M"),
    )
    hello, python = await skill_tools(spec, settings, base_dir=skill_dir.parent, prepare=False)
    assert (hello.name, hello.requires_approval, hello.tenant) == ("hello", True, "analyst")
    assert python.name == "python" and python.policy.timeout == 7 and python.policy.memory == 512 << 20


async def test_reference_files_are_read_on_demand(skill_dir: Path, key: KeyPair, settings: Settings) -> None:
    (skill_dir / "references").mkdir()
    (skill_dir / "references" / "units.md").write_text("Prices are in cents.\n")
    sign_skill(skill_dir, key.private_path)
    spec = AgentSpec(name="analyst", skills=[SkillRef(ref="hello")])
    _, reader = await skill_tools(spec, settings, base_dir=skill_dir.parent)
    assert reader.name == "read_skill_reference" and "references/units.md" in reader.description
    ctx = ToolContext(run_id="r", step=1, call_id="c", idempotency_key="r:1")
    out = await reader.call({"skill": "hello", "path": "references/units.md"}, ctx)
    assert out["text"] == "Prices are in cents.\n"
    with pytest.raises(ToolExecutionError, match=r"no reference file 'scripts/run\.py'"):
        await reader.call({"skill": "hello", "path": "scripts/run.py"}, ctx)
