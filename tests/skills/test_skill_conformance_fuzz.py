"""Generated front matter: strict mode and the reference validator (in process) give the same verdict."""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from skills_ref.validator import validate

from shopfloor.errors import SkillFormatError
from shopfloor.skills import load_skill

pytestmark = pytest.mark.slow  # hundreds of generated skills

NAME_CHARS = st.sampled_from(list("abcxyz019-_AZé. "))
names = st.one_of(
    st.text(NAME_CHARS, min_size=0, max_size=70),
    st.sampled_from(["good-name", "a" * 64, "a" * 65, "-x", "x-", "a--b", "Données", "données"]),
)
scalars = st.one_of(
    st.text(st.characters(codec="utf-8", exclude_categories=("Cs", "Cc")), max_size=40),
    st.sampled_from(["", "x" * 500, "x" * 501, "d" * 1024, "d" * 1025, "yes", "null", "1.0", "a: b", "#c"]),
)


def _quote(value: str, style: int) -> str:
    if style == 0:
        return "'" + value.replace("'", "''") + "'"
    if style == 1:
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return value  # plain: may well be invalid YAML, which both must refuse


@st.composite
def front_matter(draw: st.DrawFn) -> tuple[str, str]:
    """A valid skill, then none, one or two random changes: about half stay valid."""
    valid_names = st.text(st.sampled_from(list("abcxyz019é")), min_size=1, max_size=64)
    name = draw(valid_names)
    fields = {"name": name, "description": draw(st.text(st.sampled_from(list("abc xyz,.é")), min_size=1))}
    for key in draw(st.sets(st.sampled_from(["license", "compatibility", "allowed-tools"]))):
        fields[key] = draw(st.text(st.sampled_from(list("abc xyz-.")), max_size=30))
    metadata = draw(st.booleans())
    dir_name = name
    for change in draw(st.lists(st.integers(0, 5), max_size=2)):
        if change == 0:
            fields["name"] = name = draw(names)
        elif change == 1:
            dir_name = draw(names)
        elif change == 2:
            fields[draw(st.sampled_from(["description", "compatibility", "license"]))] = draw(scalars)
        elif change == 3:
            fields[draw(st.sampled_from(["version", "tags", "author"]))] = draw(scalars)
        elif change == 4:
            del fields[draw(st.sampled_from(sorted(fields)))]
        else:
            fields["allowed-tools"] = draw(scalars)
    lines = [f"{key}: {_quote(value, draw(st.integers(0, 2)))}" for key, value in fields.items()]
    if metadata:
        lines += ["metadata:", f"  version: {_quote(draw(scalars), draw(st.integers(0, 2)))}"]
    return dir_name, "---\n" + "\n".join(lines) + "\n---\nbody\n"


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(front_matter())
def test_strict_verdict_equals_reference_verdict(case: tuple[str, str]) -> None:
    dir_name, text = case
    if not dir_name.strip(" .") or "/" in dir_name:
        return  # not a directory name this file system can hold
    with tempfile.TemporaryDirectory() as tmp:
        skill = Path(tmp) / dir_name
        skill.mkdir()
        (skill / "SKILL.md").write_text(text, encoding="utf-8")
        reference = validate(skill) == []
        try:
            load_skill(skill, strict=True)
            ours = True
        except SkillFormatError:
            ours = False
        assert ours == reference, f"{text!r} in {dir_name!r}: reference {reference}, strict {ours}"
