"""YAML bombs: a few hundred bytes that would cost the host seconds of CPU or gigabytes of memory.

The attack is on the host, before any signature check or sandbox: a skill author's
``SKILL.md`` front matter or ``shopfloor.yaml``, an agent's ``agent.yaml``, a sandbox policy
file. Every reader goes through the one bounded loader (``shopfloor.spec._yaml``): each bomb
must be refused with ``file:line`` and the limit it hit, in well under a second of CPU and a
few MiB of memory.
"""

from __future__ import annotations

import re
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path

import pytest
from typer.testing import CliRunner

from shopfloor.cli import app
from shopfloor.errors import ShopfloorError
from shopfloor.skills import load_skill, new_skill
from shopfloor.spec import load_spec, spec_resolvers


def merge_keys(levels: int = 7, refs: int = 10) -> str:
    """Each level merges the previous one ``refs`` times: refs**levels mappings (411 bytes took 3.2 s)."""
    lines = ["a0: &a0 {k: v}"]
    for level in range(1, levels + 1):
        lines.append(f"a{level}: &a{level} {{<<: [{', '.join([f'*a{level - 1}'] * refs)}]}}")
    return "\n".join(lines) + "\n"


def billion_laughs(levels: int = 9, refs: int = 10) -> str:
    lines = ['l0: &l0 "lol"']
    for level in range(1, levels + 1):
        lines.append(f"l{level}: &l{level} [{','.join([f'*l{level - 1}'] * refs)}]")
    return "\n".join(lines) + "\n"


# name: (text, line of the text where the limit is hit, what the error says)
BOMBS: dict[str, tuple[str, int | None, str]] = {
    "merge-keys": (merge_keys(), 4, "merge keys ('<<') expand more mappings than the YAML limit of 1000"),
    "billion-laughs": (billion_laughs(), 6, "more than the YAML limit of 20000 values"),
    "deep-nesting": (
        "a: " + "[" * 990 + "]" * 990 + "\n",
        1,
        "nested deeper than the YAML depth limit of 64",
    ),
    "many-aliases": (
        "a: &a x\nb: [" + ", ".join(["*a"] * 300) + "]\n",
        2,
        "more aliases (*a) than the YAML limit",
    ),
    "oversized": ("a: b\n" * 300_000, None, "over the YAML size limit of"),
}
# Front matter allows 256 values (StrictYAML is quadratic in them), so expansions stop earlier there.
FRONT_MATTER = {
    "merge-keys": (4, "a3.k: more than the YAML limit of 256 values"),
    "billion-laughs": (4, "l3[1][1][7]: more than the YAML limit of 256 values"),
}

runner = CliRunner()


def _agent_yaml(tmp: Path, text: str) -> tuple[Path, int, Callable[[], object]]:
    path = tmp / "agent.yaml"
    path.write_text(text)
    return path, 0, lambda: load_spec(path, resolvers=spec_resolvers())


def _sidecar(tmp: Path, text: str) -> tuple[Path, int, Callable[[], object]]:
    skill = new_skill("bomb", tmp)
    (skill / "shopfloor.yaml").write_text(text)
    return skill / "shopfloor.yaml", 0, lambda: load_skill(skill, strict=False)


def _front_matter(tmp: Path, text: str) -> tuple[Path, int, Callable[[], object]]:
    skill = new_skill("bomb", tmp)
    (skill / "SKILL.md").write_text(f"---\n{text}---\n\n# Instructions\n")
    return skill / "SKILL.md", 1, lambda: load_skill(skill, strict=False)


def _cli(*args: str) -> Callable[[], object]:
    def run() -> object:
        result = runner.invoke(app, list(args))
        # The command raised the error that ``shopfloor`` prints as "error: ..." and exits 2 for.
        assert isinstance(result.exception, ShopfloorError), result.output
        raise result.exception

    return run


def _skill_verify(tmp: Path, text: str) -> tuple[Path, int, Callable[[], object]]:
    skill = new_skill("bomb", tmp)
    (skill / "SKILL.md").write_text(f"---\n{text}---\n\n# Instructions\n")
    return skill / "SKILL.md", 1, _cli("skill", "verify", str(skill))


def _sandbox_policy(tmp: Path, text: str) -> tuple[Path, int, Callable[[], object]]:
    path = tmp / "policy.yaml"
    path.write_text(text)
    return path, 0, _cli("sandbox", "exec", "--policy", str(path), "--", "true")


READERS = {
    "agent.yaml": _agent_yaml,
    "shopfloor.yaml": _sidecar,
    "SKILL.md": _front_matter,
    "skill verify": _skill_verify,
    "sandbox policy": _sandbox_policy,
}


@pytest.mark.parametrize("bomb", BOMBS)
@pytest.mark.parametrize("reader", READERS)
def test_yaml_bomb_is_refused_fast_at_its_line(tmp_path: Path, reader: str, bomb: str) -> None:
    text, line, limit = BOMBS[bomb]
    path, offset, read = READERS[reader](tmp_path, text)
    if offset and bomb in FRONT_MATTER:
        line, limit = FRONT_MATTER[bomb]
    tracemalloc.start()
    started = time.process_time()
    try:
        with pytest.raises(ShopfloorError) as caught:
            read()
        cpu = time.process_time() - started
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    message = str(caught.value)
    assert limit in message
    where = re.escape(str(path)) + (f":{line + offset}\\b" if line is not None else r":\d+")
    assert re.search(where, message), message
    # Refused in a small fraction of these bounds (tracemalloc itself slows Python down ~2x).
    assert cpu < 5, f"{reader} spent {cpu:.1f} s of CPU on {bomb}"
    assert peak < 64 << 20, f"{reader} peaked at {peak >> 20} MiB on {bomb}"


def test_front_matter_too_large_for_strictyaml_is_refused_before_it(tmp_path: Path) -> None:
    """StrictYAML's time grows with the square of the values: 64 KiB of keys took it 21 s of CPU."""
    keys = "".join(f"k{index}: v\n" for index in range(6000))
    path, offset, read = _front_matter(tmp_path, keys)
    # The 257th value (the mapping is the first) is the value of k127, on line 128 of the text.
    started = time.process_time()
    with pytest.raises(
        ShopfloorError, match=rf"{re.escape(str(path))}:{128 + offset}: .*YAML limit of 256 values"
    ):
        read()
    assert time.process_time() - started < 5


def test_front_matter_past_a_syntax_error_is_bounded_by_lines(tmp_path: Path) -> None:
    """Where libyaml stops at a syntax error, the values after it are not counted: StrictYAML only
    ever sees a front matter of at most 256 lines then, whatever follows the error."""
    keys = "a: b: c\n" + "".join(f"k{index}: v\n" for index in range(6000))
    path, _, read = _front_matter(tmp_path, keys)
    with pytest.raises(ShopfloorError, match=rf"{re.escape(str(path))}:1: .*over 256 lines long"):
        read()


def test_the_bombs_are_small() -> None:
    """The attack is a few hundred bytes: no size limit alone could stop it."""
    assert len(merge_keys()) < 500 and len(billion_laughs()) < 500
    assert len(BOMBS["deep-nesting"][0]) < 2000
