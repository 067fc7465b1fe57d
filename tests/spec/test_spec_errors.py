"""Every kind of mistake in agent.yaml is reported with file:line:column and what is expected."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from shopfloor.errors import SpecError
from shopfloor.runtime import agent_resolvers
from shopfloor.spec import AgentSpec, LoadedSpec, load_spec, parse_spec

RESOLVERS = agent_resolvers()


def write(tmp_path: Path, text: str, name: str = "agent.yaml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text).lstrip("\n"))
    return path


def problems(path: Path) -> list[tuple[int | None, int | None, str]]:
    with pytest.raises(SpecError) as info:
        load_spec(path, resolvers=RESOLVERS)
    for loc, _ in info.value.problems:
        assert loc.file == str(path)
    return [(loc.line, loc.column, message) for loc, message in info.value.problems]


def test_valid_spec_loads_with_defaults(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
        name: helper
        instructions: Be brief.
        tools:
          - name: calculator
            source: builtin:calculator
        """,
    )
    loaded = load_spec(tmp_path, resolvers=RESOLVERS)
    assert isinstance(loaded, LoadedSpec)
    assert loaded.path == path.resolve()
    assert loaded.base_dir == tmp_path.resolve()
    assert loaded.spec.name == "helper"
    assert loaded.spec.limits.max_steps == 20
    assert loaded.digest.startswith("sha256:") and len(loaded.digest) == 7 + 64
    where = loaded.location(("tools", 0, "source"))
    assert (where.file, where.line, where.column) == (str(path), 5, 13)


def test_typo_in_key_names_it_suggests_closest_and_lists_allowed(tmp_path: Path) -> None:
    path = write(tmp_path, "name: a\ninstrucions: hi\n")
    [(line, column, message)] = problems(path)
    assert (line, column) == (2, 1)
    assert "unknown key 'instrucions'" in message
    assert "did you mean 'instructions'?" in message
    assert "Allowed keys: answer, connectors, decision, description, guardrails, instructions" in message


def test_typo_in_nested_key_points_at_the_key(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
        name: a
        limits:
          max_step: 3
        """,
    )
    [(line, column, message)] = problems(path)
    assert (line, column) == (3, 3)
    assert message.startswith("unknown key 'max_step' in limits: did you mean 'max_steps'?")
    assert "max_tokens" in message


def test_wrong_type_says_expected_and_found(tmp_path: Path) -> None:
    path = write(tmp_path, "name: a\nlimits:\n  max_steps: ten\n")
    [(line, column, message)] = problems(path)
    assert (line, column) == (3, 14)
    assert message == (
        "limits.max_steps (model turns before the run stops): expected an integer, found a string ('ten')"
    )


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("0", "expected a number >= 1, found an integer (0)"),
        ("65", "expected a number <= 64, found an integer (65)"),
        ("1" + "0" * 40, "expected a number <= 64, found an integer (1" + "0" * 40 + ")"),
        ("many", "expected an integer, found a string ('many')"),
        ("2.5", "expected an integer, found a number (2.5)"),
        ("2.0", "expected an integer, found a number (2.0)"),
        ("true", "expected an integer, found a boolean (true)"),
        ("'3'", "expected an integer, found a string ('3')"),
    ],
)
def test_max_parallel_children_out_of_range_is_located(tmp_path: Path, value: str, expected: str) -> None:
    path = write(tmp_path, f"name: a\nlimits:\n  max_parallel_children: {value}\n")
    [(line, column, message)] = problems(path)
    assert (line, column) == (3, 26)
    assert message.startswith("limits.max_parallel_children (child runs of the run executing at once")
    assert message.endswith(expected)


def test_number_where_string_expected_suggests_quotes_with_raw_text(tmp_path: Path) -> None:
    path = write(tmp_path, "name: a\nversion: 1.10\n")
    [(line, column, message)] = problems(path)
    assert (line, column) == (2, 10)
    assert "expected a string, found a number (1.1)" in message
    assert "'1.10'" in message


def test_missing_top_level_field_points_at_the_mapping(tmp_path: Path) -> None:
    path = write(tmp_path, "# my agent\ninstructions: hi\n")
    [(line, column, message)] = problems(path)
    assert (line, column) == (2, 1)
    assert message == "missing required key 'name' in the agent spec"


def test_missing_nested_field_points_at_the_parent_mapping(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
        name: a
        workspace:
          mounts:
            - source: /data
        """,
    )
    [(line, column, message)] = problems(path)
    assert (line, column) == (4, 7)
    assert "missing required key 'path'" in message
    assert "in workspace.mounts[0]" in message


def test_duplicate_key_names_both_lines(tmp_path: Path) -> None:
    path = write(tmp_path, "name: a\ndescription: one\nname: b\n")
    [(line, column, message)] = problems(path)
    assert (line, column) == (3, 1)
    assert "duplicate key 'name'" in message
    assert "first set on line 1, again on line 3" in message


def test_invalid_yaml_gives_the_parser_position(tmp_path: Path) -> None:
    path = write(tmp_path, 'name: a\ninstructions: "unclosed\nmodel: test\n')
    [(line, column, message)] = problems(path)
    assert line == 4 and column is not None
    assert message.startswith("invalid YAML:")
    assert "quoted scalar" in message


def test_bad_indentation_is_invalid_yaml_at_its_line(tmp_path: Path) -> None:
    path = write(tmp_path, "name: a\nlimits:\n  max_steps: 3\n   max_tokens: 9\n")
    [(line, _, message)] = problems(path)
    assert line == 4
    assert message.startswith("invalid YAML:")


def test_top_level_must_be_a_mapping(tmp_path: Path) -> None:
    path = write(tmp_path, "- name: a\n- name: b\n")
    [(line, column, message)] = problems(path)
    assert (line, column) == (1, 1)
    assert "expected a mapping of keys (name, version" in message
    assert "found a list of 2 items" in message


def test_empty_file(tmp_path: Path) -> None:
    path = write(tmp_path, "# nothing here\n")
    assert problems(path) == [(1, 1, "the file is empty: expected a YAML mapping")]


def test_literal_choice_lists_the_options(tmp_path: Path) -> None:
    path = write(tmp_path, "name: a\nsandbox:\n  isolation: docker\n")
    [(line, column, message)] = problems(path)
    assert (line, column) == (3, 14)
    assert "expected one of 'auto', 'bwrap', 'landlock', 'gvisor' or 'none'" in message
    assert "found a string ('docker')" in message


def test_union_alternatives_become_one_problem(tmp_path: Path) -> None:
    path = write(tmp_path, "name: a\nsandbox:\n  network: everywhere\n")
    [(line, column, message)] = problems(path)
    assert (line, column) == (3, 12)
    assert message == "sandbox.network: expected a list or one of 'none', found a string ('everywhere')"


def test_union_error_inside_the_matching_alternative_points_at_the_item(tmp_path: Path) -> None:
    path = write(tmp_path, "name: a\nsandbox:\n  network:\n    - pypi.org\n    - 443\n")
    [(line, column, message)] = problems(path)
    assert (line, column) == (5, 7)
    assert message.startswith("sandbox.network[1]: expected a string, found an integer (443)")


def test_scalar_where_a_list_is_expected_suggests_the_list(tmp_path: Path) -> None:
    path = write(tmp_path, "name: a\npermissions:\n  approvers: bob\n")
    [(line, column, message)] = problems(path)
    assert (line, column) == (3, 14)
    assert message == (
        "permissions.approvers: expected a list, found a string ('bob'); "
        "for a single item write a list: [bob]"
    )


def test_value_error_from_a_validator(tmp_path: Path) -> None:
    path = write(tmp_path, "name: My_Agent\n")
    [(line, column, message)] = problems(path)
    assert (line, column) == (1, 7)
    assert message.startswith("name: expected 1-64 lowercase letters")


def test_skill_shorthand_error_points_at_the_list_item(tmp_path: Path) -> None:
    path = write(tmp_path, "name: a\nskills:\n  - pdf@1.0\n  - 12\n")
    [(line, column, message)] = problems(path)
    assert (line, column) == (4, 5)
    assert "skills[1]" in message and "expected" in message


def test_all_problems_at_once_sorted_by_line(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
        name: a
        limits:
          max_steps: 0
          wall_time: soon
        sandbox:
          memory: lots
        tools:
          - name: t
        colour: red
        name: b
        """,
    )
    found = problems(path)
    lines = [line for line, _, _ in found]
    assert lines == sorted(lines)
    assert lines == [3, 4, 6, 8, 9, 10]
    messages = "\n".join(message for _, _, message in found)
    assert "expected a number >= 1, found an integer (0)" in messages
    assert "expected a size such as 256M or 1G" in messages
    assert "missing required key 'source'" in messages
    assert "unknown key 'colour'" in messages
    assert "duplicate key 'name'" in messages


def test_duplicate_tool_names_are_rejected(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
        name: a
        tools:
          - {name: calc, source: "builtin:calculator"}
          - {name: calc, source: "builtin:calculator"}
        """,
    )
    [(line, _, message)] = problems(path)
    assert line == 3
    assert "used more than once: calc" in message


def test_bad_tool_source_says_the_accepted_forms(tmp_path: Path) -> None:
    path = write(tmp_path, "name: a\ntools:\n  - name: t\n    source: tools.py\n")
    [(line, column, message)] = problems(path)
    assert (line, column) == (4, 13)
    assert "expected builtin:NAME, FILE.py:FUNCTION or module:attribute" in message


def test_missing_tool_file_and_seed_are_located(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
        name: a
        tools:
          - name: t
            source: tools.py:run
        workspace:
          seed: [data/]
        """,
    )
    found = problems(path)
    assert [(line, column) for line, column, _ in found] == [(4, 13), (6, 10)]
    assert "tool file 'tools.py' not found" in found[0][2]
    assert "seed 'data/' not found" in found[1][2]


def test_skill_reference_forms_are_checked(tmp_path: Path) -> None:
    (tmp_path / "notaskill").mkdir()
    path = write(
        tmp_path,
        """
        name: a
        skills:
          - pdf@sha256:abc
          - ./notaskill
          - ./nowhere
        """,
    )
    found = problems(path)
    assert [line for line, _, _ in found] == [3, 4, 5]
    assert "64 hex digits" in found[0][2]
    assert found[1][2].startswith("skills[1].ref: skill './notaskill'") and "SKILL.md" in found[1][2]
    assert found[2][2].startswith("skills[2].ref: skill './nowhere'")


# <NL> marks where each case puts the YAML escape \n (a newline ending the value) into a valid spec.
NEWLINE_CASES = [
    ('name: "a<NL>"\n', 1, "name: expected 1-64 lowercase letters"),
    ('name: a\ntools:\n  - {name: "calc<NL>", source: "builtin:calculator"}\n', 3, "expected 1-64 letters"),
    (
        'name: a\ntools:\n  - {name: calc, source: "builtin:calculator<NL>"}\n',
        3,
        "expected builtin:NAME, FILE.py:FUNCTION or module:attribute",
    ),
    ('name: a\nsandbox: {memory: "1G<NL>"}\n', 2, "expected a size such as 256M or 1G"),
    ('name: a\nsandbox: {disk: "2GiB<NL>"}\n', 2, "expected a size such as 256M or 1G"),
    # neither name@sha256:DIGEST nor name@version once a line break ends it, so a path: none is there
    (
        f'name: a\nskills:\n  - "pdf@sha256:{"a" * 64}<NL>"\n',
        3,
        f"skills[0].ref: skill 'pdf@sha256:{'a' * 64}\\n' is not a skill directory",
    ),
    (
        'name: a\nskills:\n  - "pdf@1.0<NL>"\n',
        3,
        "skills[0].ref: skill 'pdf@1.0\\n' is not a skill directory",
    ),
]


@pytest.mark.parametrize(("template", "line", "message"), NEWLINE_CASES)
def test_a_value_ending_in_a_newline_is_refused(
    tmp_path: Path, template: str, line: int, message: str
) -> None:
    """Python's ``$`` matches before a final newline; the checks end at the end of the text."""
    assert load_spec(write(tmp_path, template.replace("<NL>", "")), resolvers=RESOLVERS).spec.name == "a"
    found = problems(write(tmp_path, template.replace("<NL>", "\\n")))
    assert [(at, message in text) for at, _, text in found] == [(line, True)], found


def test_unknown_tag_is_reported(tmp_path: Path) -> None:
    path = write(tmp_path, "name: !secret a\n")
    [(line, column, message)] = problems(path)
    assert (line, column) == (1, 7)
    assert "!secret" in message


def test_complex_key_is_reported(tmp_path: Path) -> None:
    path = write(tmp_path, "name: a\n? [x, y]\n: 1\n")
    [(line, column, message)] = problems(path)
    assert (line, column) == (2, 3)
    assert "expected a plain word as key" in message


def test_merge_keys_and_anchors_are_understood(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
        name: a
        limits: &limits
          max_steps: 4
        sandbox:
          <<: {cpus: 2}
          pids: 10
        """,
    )
    spec = load_spec(path, resolvers=RESOLVERS).spec
    assert spec.limits.max_steps == 4
    assert spec.sandbox.cpus == 2 and spec.sandbox.pids == 10


def test_missing_path_and_directory_without_spec(tmp_path: Path) -> None:
    with pytest.raises(SpecError, match=r"no agent\.yaml in this directory"):
        load_spec(tmp_path, resolvers=RESOLVERS)
    with pytest.raises(SpecError, match="no such file or directory"):
        load_spec(tmp_path / "absent.yaml", resolvers=RESOLVERS)


def test_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "agent.yaml"
    path.write_bytes(b"name: \xff\n")
    with pytest.raises(SpecError, match="not UTF-8"):
        load_spec(path, resolvers=RESOLVERS)


def test_error_string_is_one_line_per_problem(tmp_path: Path) -> None:
    path = write(tmp_path, "name: a\nlimits: 3\nfoo: 1\n")
    with pytest.raises(SpecError) as info:
        load_spec(path, resolvers=RESOLVERS)
    lines = str(info.value).splitlines()
    assert lines[0].startswith(f"{path}:2:9: limits: expected a mapping")
    assert lines[1].startswith(f"{path}:3:1: unknown key 'foo'")


def test_parse_spec_without_base_dir_skips_references() -> None:
    spec, digest = parse_spec("name: a\ntools:\n  - {name: t, source: 'missing.py:f'}\n")
    assert isinstance(spec, AgentSpec)
    assert digest.startswith("sha256:")


@pytest.mark.parametrize(
    ("body", "where", "expected"),
    [
        ("limits:\n  max_steps: true\n", (3, 14), "expected an integer, found a boolean (true)"),
        ("limits:\n  wall_time: false\n", (3, 14), "expected a number, found a boolean (false)"),
        ("limits:\n  wall_time: '60'\n", (3, 14), "expected a number, found a string ('60')"),
        ("sandbox:\n  pids: yes\n", (3, 9), "expected an integer, found a boolean (true)"),
    ],
)
def test_a_number_is_a_yaml_number_not_a_bool_or_a_string(
    tmp_path: Path, body: str, where: tuple[int, int], expected: str
) -> None:
    """pydantic's lax mode read ``max_steps: true`` as one step; a spec's numbers are strict."""
    path = write(tmp_path, "name: a\n" + body)
    [(line, column, message)] = problems(path)
    assert (line, column) == where
    assert message.endswith(expected)


def test_an_integer_is_still_a_number_where_a_number_is_expected(tmp_path: Path) -> None:
    path = write(tmp_path, "name: a\nlimits:\n  wall_time: 60\n  step_timeout: 2.5\n")
    limits = load_spec(path, resolvers=RESOLVERS).spec.limits
    assert (limits.wall_time, limits.step_timeout) == (60.0, 2.5)
