"""The digest: same agent, same digest anywhere; any change, a new digest."""

from __future__ import annotations

import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from shopfloor.errors import SpecError
from shopfloor.runtime import agent_resolvers
from shopfloor.spec import (
    SpecReference,
    file_digest,
    load_spec,
    spec_digest,
    spec_references,
    spec_resolvers,
    tree_digest,
)

RESOLVERS = agent_resolvers()

SPEC = """
name: helper
version: 1.2.0
instructions: Use the tools.
tools:
  - name: convert
    source: tools.py:convert
  - name: calculator
    source: builtin:calculator
skills:
  - ./skills/summarise
  - pdf@2.1.0
  - ocr@sha256:{digest}
workspace:
  seed: [data, notes.txt]
"""
OCR = "ab" * 32
SKILL_MD = "---\nname: summarise\ndescription: Summarise a text.\n---\nSummarise {what}.\n"


def make_agent(root: Path, spec: str = SPEC) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "agent.yaml").write_text(textwrap.dedent(spec).lstrip().replace("{digest}", OCR))
    (root / "tools.py").write_text("def convert(x: float) -> float:\n    return x * 1.609\n")
    skill = root / "skills" / "summarise"
    (skill / "scripts").mkdir(parents=True, exist_ok=True)
    (skill / "SKILL.md").write_text(SKILL_MD.format(what="text"))
    (skill / "scripts" / "run.py").write_text("print('summary')\n")
    (root / "data").mkdir(exist_ok=True)
    (root / "data" / "table.csv").write_text("a,b\n1,2\n")
    (root / "notes.txt").write_text("remember\n")
    return root


@pytest.fixture
def agent(tmp_path: Path) -> Path:
    return make_agent(tmp_path / "agent")


def test_digest_is_stable_and_recomputable(agent: Path) -> None:
    first = load_spec(agent, resolvers=RESOLVERS)
    second = load_spec(agent / "agent.yaml", resolvers=RESOLVERS)
    assert first.digest == second.digest == spec_digest(first, RESOLVERS)


def test_moving_the_agent_dir_keeps_the_digest(agent: Path, tmp_path: Path) -> None:
    before = load_spec(agent, resolvers=RESOLVERS).digest
    moved = tmp_path / "elsewhere" / "deeper" / "copy"
    shutil.copytree(agent, moved)
    assert load_spec(moved, resolvers=RESOLVERS).digest == before


def test_key_order_and_formatting_do_not_matter(agent: Path) -> None:
    before = load_spec(agent, resolvers=RESOLVERS).digest
    (agent / "agent.yaml").write_text(
        textwrap.dedent(
            f"""
            # reordered, flow style, comments
            workspace: {{seed: [data, notes.txt]}}
            skills: [{{ref: ./skills/summarise}}, pdf@2.1.0, "ocr@sha256:{OCR}"]
            tools:
              - {{source: "tools.py:convert", name: convert}}
              - {{source: "builtin:calculator", name: calculator}}
            instructions: "Use the tools."
            version: "1.2.0"
            name: helper
            """
        ).lstrip()
    )
    assert load_spec(agent, resolvers=RESOLVERS).digest == before


def test_explicit_defaults_give_the_same_digest(agent: Path) -> None:
    before = load_spec(agent, resolvers=RESOLVERS).digest
    text = (agent / "agent.yaml").read_text()
    (agent / "agent.yaml").write_text(
        text
        + "limits:\n  max_steps: 20\n  wall_time: 600\nsandbox:\n  isolation: auto\n  network: none\n"
        + "permissions:\n  workspace: read-write\nmodel: local:qwen2.5-coder-0.5b\n"
    )
    assert load_spec(agent, resolvers=RESOLVERS).digest == before


@pytest.mark.parametrize(
    ("relative", "content"),
    [
        ("tools.py", "def convert(x: float) -> float:\n    return x * 1.6\n"),
        ("skills/summarise/scripts/run.py", "print('shorter')\n"),
        ("skills/summarise/scripts/extra.py", "pass\n"),
        ("skills/summarise/SKILL.md", SKILL_MD.format(what="briefly")),
        ("data/table.csv", "a,b\n1,3\n"),
        ("notes.txt", "forget\n"),
    ],
)
def test_any_referenced_change_gives_a_new_digest(agent: Path, relative: str, content: str) -> None:
    before = load_spec(agent, resolvers=RESOLVERS).digest
    (agent / relative).write_text(content)
    assert load_spec(agent, resolvers=RESOLVERS).digest != before


@pytest.mark.parametrize(
    ("old", "new"),
    [
        ("Use the tools.", "Use the tools!"),
        ("version: 1.2.0", "version: 1.2.1"),
        ("pdf@2.1.0", "pdf@2.2.0"),
        (OCR, "cd" * 32),
        ("builtin:calculator", "builtin:calc"),
    ],
)
def test_any_spec_change_gives_a_new_digest(agent: Path, old: str, new: str) -> None:
    before = load_spec(agent, resolvers=RESOLVERS).digest
    path = agent / "agent.yaml"
    path.write_text(path.read_text().replace(old, new))
    assert load_spec(agent, resolvers=RESOLVERS).digest != before


def test_caches_in_a_seed_dir_do_not_change_the_digest(agent: Path) -> None:
    before = load_spec(agent, resolvers=RESOLVERS).digest
    cache = agent / "data" / "__pycache__"
    cache.mkdir()
    (cache / "x.cpython-311.pyc").write_bytes(b"\0compiled")
    (agent / "data" / "y.pyc").write_bytes(b"\0compiled")
    assert load_spec(agent, resolvers=RESOLVERS).digest == before


def test_renaming_a_file_in_a_tree_changes_its_digest(tmp_path: Path) -> None:
    (tmp_path / "a.txt").write_text("same")
    before = tree_digest(tmp_path)
    (tmp_path / "a.txt").rename(tmp_path / "b.txt")
    assert tree_digest(tmp_path) != before


def test_symlinks_count_by_target_and_are_not_followed(tmp_path: Path) -> None:
    outside = tmp_path / "outside.txt"
    outside.write_text("secret v1")
    tree = tmp_path / "tree"
    tree.mkdir()
    (tree / "link").symlink_to(outside)
    before = tree_digest(tree)
    outside.write_text("secret v2")
    assert tree_digest(tree) == before


def test_file_digest_is_sha256_of_the_bytes(tmp_path: Path) -> None:
    path = tmp_path / "f"
    path.write_bytes(b"abc")
    assert file_digest(path) == "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"


def test_references_are_classified(agent: Path) -> None:
    refs = spec_references(load_spec(agent, resolvers=RESOLVERS).spec)
    assert [(r.kind, r.ref) for r in refs] == [
        ("tool-file", "tools.py:convert"),
        ("skill-path", "./skills/summarise"),
        ("skill-version", "pdf@2.1.0"),
        ("skill-digest", f"ocr@sha256:{OCR}"),
        ("seed", "data"),
        ("seed", "notes.txt"),
    ]
    assert refs[0].where == ("tools", 0, "source")


def test_resolvers_are_passed_in(agent: Path) -> None:
    before = load_spec(agent, resolvers=RESOLVERS).digest
    seen: list[tuple[str, Path]] = []

    def registry_lookup(ref: str, base_dir: Path) -> str:
        seen.append((ref, base_dir))
        return "sha256:" + "0" * 64

    after = load_spec(agent, resolvers={**RESOLVERS, "skill-version": registry_lookup})
    assert seen == [("pdf@2.1.0", agent.resolve())]
    assert after.digest != before
    # Nothing was registered anywhere: the same resolvers give the same digest again.
    assert load_spec(agent, resolvers=RESOLVERS).digest == before

    def unknown(ref: str, base_dir: Path) -> str:
        raise ValueError(f"skill {ref!r} is not in the registry")

    with pytest.raises(SpecError) as info:
        load_spec(agent, resolvers={**RESOLVERS, "skill-version": unknown})
    [(loc, message)] = info.value.problems
    assert (loc.line, loc.column) == (11, 5)
    assert message == "skills[1].ref: skill 'pdf@2.1.0' is not in the registry"


def test_a_skill_path_digests_as_the_resolvers_say(agent: Path) -> None:
    # The spec layer's own resolver digests the tree; the skills layer's, the skill's manifest.
    assert load_spec(agent, resolvers=spec_resolvers()).digest != load_spec(agent, resolvers=RESOLVERS).digest


def test_the_spec_layer_imports_no_higher_layer(agent: Path) -> None:
    # Loading a spec with the spec layer's resolvers reaches no other layer (no hidden hook imports).
    code = (
        "import sys\n"
        "from shopfloor.spec import load_spec, spec_resolvers, validate_path, agent_validator\n"
        f"load_spec({str(agent)!r}, resolvers=spec_resolvers())\n"
        f"validate_path({str(agent)!r}, [agent_validator(spec_resolvers())])\n"
        "loaded = sorted(m for m in sys.modules if m.startswith('shopfloor.'))\n"
        "print(' '.join(m for m in loaded if not m.startswith(('shopfloor.spec', 'shopfloor._'))))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert set(done.stdout.split()) <= {"shopfloor.config", "shopfloor.errors"}


def test_spec_reference_is_a_frozen_value() -> None:
    ref = SpecReference(kind="seed", ref="x", where=("workspace", "seed", 0))
    with pytest.raises(AttributeError):
        ref.kind = "other"  # type: ignore[misc]
