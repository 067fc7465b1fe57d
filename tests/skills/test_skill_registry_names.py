"""A skill name becomes a directory of the registry's cache: a name that is not one directory is refused,
in every mode, before anything is written or deleted outside the registry."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from shopfloor.config import Settings
from shopfloor.errors import SkillError, SkillFormatError, SkillRegistryError
from shopfloor.skills import KeyPair, SkillRegistry, TrustPolicy, load_skill, new_skill, sign_skill

EVIL = "../../x/pwn"


@pytest.fixture
def compat() -> TrustPolicy:
    """Compatibility mode, signatures optional: the loosest policy an operator can choose."""
    return TrustPolicy(trusted_keys=frozenset(), require_signed=False, strict=False)


@pytest.fixture
def victim(settings: Settings) -> Path:
    """The directory ``cache/DIGEST/../../x/pwn`` points at, with a file that must survive."""
    victim = settings.home / "x"
    victim.mkdir(parents=True)
    (victim / "keep.txt").write_text("still here\n")
    return victim


def _outside_registry(settings: Settings) -> set[str]:
    return {
        str(p.relative_to(settings.home))
        for p in settings.home.rglob("*")
        if not p.relative_to(settings.home).as_posix().startswith(("skills", "shopfloor.db"))
    }


@pytest.fixture
def registry(settings: Settings, compat: TrustPolicy) -> Iterator[SkillRegistry]:
    settings.ensure_home()
    registry = SkillRegistry(settings.db_url, settings.home / "skills", compat)
    yield registry
    registry.close()


@pytest.mark.parametrize("name", [EVIL, "..", "a/b", "a b", "x\\y", ".hidden"])
def test_a_name_that_is_not_one_directory_is_refused_in_every_mode(
    tmp_path: Path, name: str, compat: TrustPolicy
) -> None:
    skill_dir = new_skill("pwn", tmp_path)
    md = skill_dir / "SKILL.md"
    md.write_text(md.read_text().replace("name: pwn", f"name: {json.dumps(name)}"))
    for strict in (True, False):
        with pytest.raises(
            SkillFormatError, match=r"cannot be used as a directory name: .*\[rule name-path\]"
        ):
            load_skill(skill_dir, strict=strict)


def test_publishing_and_preparing_a_traversing_name_touches_nothing_outside(
    tmp_path: Path, settings: Settings, registry: SkillRegistry, victim: Path
) -> None:
    skill_dir = new_skill("pwn", tmp_path)
    md = skill_dir / "SKILL.md"
    md.write_text(md.read_text().replace("name: pwn", f'name: "{EVIL}"'))
    before = _outside_registry(settings)
    # The whole attack first, whatever it raises: what it did to the file system is what counts.
    with contextlib.suppress(SkillError, OSError):
        registry.publish(skill_dir)
        registry.resolve(f"{EVIL}@0.1.0")
    assert (victim / "keep.txt").read_text() == "still here\n"
    assert _outside_registry(settings) == before
    with pytest.raises(SkillFormatError, match="cannot be used as a directory name"):
        registry.publish(skill_dir)
    with pytest.raises(SkillRegistryError, match="no skill"):
        registry.resolve(f"{EVIL}@0.1.0")


def _tamper(settings: Settings, **values: str) -> None:
    engine = sa.create_engine(settings.db_url)
    try:
        with engine.begin() as conn:
            conn.execute(
                sa.text("UPDATE skill_versions SET " + ", ".join(f"{k} = :{k}" for k in values)), values
            )
    finally:
        engine.dispose()


def test_a_registry_row_with_a_traversing_name_is_refused(
    skill_dir: Path, key: KeyPair, settings: Settings, registry: SkillRegistry, victim: Path
) -> None:
    sign_skill(skill_dir, key.private_path)
    registry.publish(skill_dir)
    _tamper(settings, name=EVIL)
    before = _outside_registry(settings)
    with pytest.raises(SkillRegistryError, match="cannot be used as a directory name"):
        registry.resolve(f"{EVIL}@0.1.0")
    assert (victim / "keep.txt").read_text() == "still here\n"
    assert _outside_registry(settings) == before


def test_a_registry_manifest_with_a_traversing_file_path_is_refused(
    skill_dir: Path, key: KeyPair, settings: Settings, registry: SkillRegistry, victim: Path
) -> None:
    sign_skill(skill_dir, key.private_path)
    published = registry.publish(skill_dir)
    engine = sa.create_engine(settings.db_url)
    with engine.connect() as conn:
        manifest = json.loads(conn.execute(sa.text("SELECT manifest FROM skill_versions")).scalar_one())
    engine.dispose()
    manifest["files"][0]["path"] = "../../../x/planted.txt"
    _tamper(settings, manifest=json.dumps(manifest))
    before = _outside_registry(settings)
    with pytest.raises(SkillRegistryError, match="outside the skill"):
        registry.resolve(f"hello@{published.digest}")
    assert not (victim / "planted.txt").exists()
    assert _outside_registry(settings) == before
