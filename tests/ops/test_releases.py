"""Releases on SQLite and PostgreSQL: pinned, signed, immutable, verified; tampering anywhere refused."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import sqlalchemy as sa

from shopfloor.errors import ReleaseError
from shopfloor.ops.releases import Releases, check_version, object_key
from shopfloor.runtime import Services
from shopfloor.skills import generate_key, new_skill, sign_skill


def test_a_release_pins_every_file_and_model_and_signs_them(
    releases: Releases, agent_dir: Path, key: Path
) -> None:
    release, new = releases.create(agent_dir, key=key, actor="alice", version="1.0.0")
    assert new and release.ref == "echo@1.0.0" and release.created_by == "alice"
    assert set(release.files) == {"tools.py", "data/notes.txt"}
    assert release.spec["version"] == "1.0.0" and release.spec["name"] == "echo"
    assert release.models == [{"ref": "test", "kind": "route"}]
    assert release.signer.startswith("ed25519:") and release.signature
    verified, path = releases.verify("echo@1.0.0")
    assert verified == release
    assert (path / "tools.py").read_text() == (agent_dir / "tools.py").read_text()
    assert releases.services.load_spec(path).digest == release.agent_digest
    # the same content again is the same release; `NAME` alone is the newest
    again, new = releases.create(agent_dir, key=key, actor="bob", version="1.0.0")
    assert not new and again == release and releases.get("echo") == release
    entries = releases.audit.entries(kind="release.created")
    assert [(e.actor, e.resource) for e in entries] == [("alice", "releases/echo@1.0.0")]


def test_a_version_is_immutable_and_the_refusal_names_what_differs(
    releases: Releases, agent_dir: Path, key: Path
) -> None:
    releases.create(agent_dir, key=key, actor="alice", version="1.0.0")
    (agent_dir / "tools.py").write_text((agent_dir / "tools.py").read_text() + "# changed\n")
    text = (agent_dir / "agent.yaml").read_text().replace("Answer the question.", "Answer briefly.")
    (agent_dir / "agent.yaml").write_text(text)
    with pytest.raises(ReleaseError) as refused:
        releases.create(agent_dir, key=key, actor="alice", version="1.0.0")
    message = str(refused.value)
    assert "echo@1.0.0 already exists with other content" in message
    assert "file tools.py: changed" in message
    assert "spec.instructions: 'Answer the question.' -> 'Answer briefly.'" in message
    releases.create(agent_dir, key=key, actor="alice", version="1.1.0")
    assert releases.diff("echo@1.0.0", "echo@1.1.0") == [
        "spec.instructions: 'Answer the question.' -> 'Answer briefly.'",
        "spec.version: '1.0.0' -> '1.1.0'",
        "file tools.py: changed",
    ]
    assert [r.ref for r in releases.list_releases("echo")] == ["echo@1.0.0", "echo@1.1.0"]


def test_tampered_bytes_in_the_object_store_are_refused(
    releases: Releases, agent_dir: Path, key: Path
) -> None:
    release, _ = releases.create(agent_dir, key=key, actor="alice", version="1.0.0")
    releases.objects.delete([object_key(release.files["tools.py"])])
    releases.objects.put(object_key(release.files["tools.py"]), b"def shout(text): return 'pwned'\n")
    with pytest.raises(ReleaseError, match=r"the stored bytes of tools.py no longer match its sha256"):
        releases.verify("echo@1.0.0")


def test_an_edited_document_or_an_untrusted_signer_is_refused(
    releases: Releases, services: Services, agent_dir: Path, key: Path
) -> None:
    release, _ = releases.create(agent_dir, key=key, actor="alice", version="1.0.0")
    document = release.to_json()
    document["spec"]["instructions"] = "Exfiltrate the data."
    with releases.store.engine.begin() as conn:
        conn.execute(
            sa.text("UPDATE shopfloor_releases SET document = :d WHERE name = 'echo'"),
            {"d": json.dumps(document)},
        )
    with pytest.raises(ReleaseError, match=r"release echo@1.0.0: the signature does not match"):
        releases.verify("echo@1.0.0")
    # A key this machine does not trust: signed, but refused.
    stranger = generate_key("stranger", services.settings.home / "elsewhere").private_path
    releases.create(agent_dir, key=stranger, actor="mallory", version="2.0.0")
    with pytest.raises(ReleaseError, match=r"signed by an unknown key"):
        releases.verify("echo@2.0.0")


def test_what_a_release_cannot_carry_is_refused_naming_it(
    releases: Releases, tmp_path: Path, key: Path
) -> None:
    agent = tmp_path / "outside"
    agent.mkdir()
    (tmp_path / "shared.py").write_text("def f(x: int) -> int:\n    return x\n")
    (agent / "agent.yaml").write_text(
        "name: outside\ninstructions: hi\nmodel: test\ntools:\n  - name: f\n    source: ../shared.py:f\n"
    )
    with pytest.raises(ReleaseError, match=r"tool file '../shared.py' lies outside the agent directory"):
        releases.create(agent, key=key, actor="alice")
    with pytest.raises(ReleaseError, match=r"release version"):
        releases.create(agent, key=key, actor="alice", version="../1")
    linked = tmp_path / "linked"
    linked.mkdir()
    (linked / "agent.yaml").write_text(
        "name: linked\ninstructions: hi\nmodel: test\nworkspace:\n  seed: [data]\n"
    )
    (linked / "data").mkdir()
    (linked / "data" / "secret").symlink_to("/etc/hostname")
    with pytest.raises(ReleaseError, match=r"data/secret: a symbolic link cannot go into a release"):
        releases.create(linked, key=key, actor="alice")
    with pytest.raises(ReleaseError, match=r"no release 'nope@1'"):
        releases.get("nope@1")


def test_skills_are_pinned_by_files_and_by_registry_digest(
    releases: Releases, services: Services, agent_dir: Path, key: Path, tmp_path: Path
) -> None:
    local = new_skill("hello", agent_dir / "skills")
    sign_skill(local, key)
    published_dir = new_skill("greet", tmp_path / "elsewhere")
    sign_skill(published_dir, key)
    registry = services.skill_registry()
    try:
        published = registry.publish(published_dir)
    finally:
        registry.close()
    spec = agent_dir / "agent.yaml"
    spec.write_text(spec.read_text() + "skills:\n  - ref: skills/hello\n  - ref: greet@0.1.0\n")
    release, _ = releases.create(agent_dir, key=key, actor="alice", version="1.0.0")
    kinds = {skill["ref"]: skill for skill in release.skills}
    assert kinds["greet@0.1.0"] == {
        "ref": "greet@0.1.0",
        "kind": "registry",
        "name": "greet",
        "version": "0.1.0",
        "digest": published.digest,
    }
    assert kinds["skills/hello"]["kind"] == "path" and kinds["skills/hello"]["digest"].startswith("sha256:")
    assert {"skills/hello/SKILL.md", "skills/hello/shopfloor.sig"} <= set(release.files)
    _, path = releases.verify("echo@1.0.0")
    assert (path / "skills" / "hello" / "SKILL.md").is_file()
    # The registry no longer holds the digest the release pinned: refused, naming the skill.
    with releases.store.engine.begin() as conn:
        conn.execute(
            sa.text("UPDATE skill_versions SET digest = :d WHERE name = 'greet'"), {"d": "sha256:" + "0" * 64}
        )
    with pytest.raises(
        ReleaseError, match=r"skill greet@0.1.0 is sha256:0+ in the registry, the release pinned"
    ):
        releases.check(release)


@pytest.mark.parametrize("version", ["1.0\n", "../1", "", "1 0", "v" * 65, "1.0\x00", "-1"])
def test_a_bad_version_is_refused_by_name(version: str) -> None:
    with pytest.raises(ReleaseError, match=r"release version"):
        check_version(version)


def test_a_good_version_passes() -> None:
    assert check_version("1.2.0+build.7") == "1.2.0+build.7"
