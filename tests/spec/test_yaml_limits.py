"""The bounded YAML loader: what real files use still loads; each limit is exact and named.

The bombs themselves, through every reader, are in tests/sandbox/escapes/test_yaml_bombs.py.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from shopfloor.errors import SpecError
from shopfloor.spec import YamlLimits, compose_yaml, load_yaml_file

LIMITS = YamlLimits(max_bytes=200, max_depth=4, max_aliases=3, max_values=40, max_merges=2)


def _error(text: str, limits: YamlLimits = LIMITS) -> tuple[int | None, str]:
    with pytest.raises(SpecError) as caught:
        compose_yaml(text, "f.yaml", limits)
    [(where, message)] = caught.value.problems
    assert where.file == "f.yaml"
    return where.line, message


def test_anchors_and_merge_keys_within_the_limits_still_work() -> None:
    text = "base: &b {memory: 1G, cpus: 1}\nsmall: {<<: *b, cpus: 2}\nbig: {<<: [*b]}\nlist: [*b]\n"
    doc = compose_yaml(text, "f.yaml", LIMITS)
    assert doc.data["small"] == {"memory": "1G", "cpus": 2}
    assert doc.data["big"] == doc.data["list"][0] == {"memory": "1G", "cpus": 1}


def test_each_limit_is_exact_and_named_at_its_line() -> None:
    assert compose_yaml("a: [[[1]]]\n", "f.yaml", LIMITS).data == {"a": [[[1]]]}
    assert _error("a: 1\nb: [[[[1]]]]\n") == (2, "nested deeper than the YAML depth limit of 4")
    assert compose_yaml("a: &a 1\nb: [*a, *a, *a]\n", "f.yaml", LIMITS).data["b"] == [1, 1, 1]
    assert _error("a: &a 1\nb: [*a, *a,\n  *a, *a]\n") == (3, "more aliases (*a) than the YAML limit of 3")
    line, message = _error("a: &a {x: 1}\nb: {<<: [*a, *a, *a]}\n")
    assert (line, message) == (2, "b: merge keys ('<<') expand more mappings than the YAML limit of 2")
    line, message = _error("a: &a [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14]\nb: [*a, *a]\n")
    assert (
        line == 2
        and message == "b[1][7]: more than the YAML limit of 40 values (each copy an alias makes counts)"
    )
    line, message = _error("a: x\n" * 50)
    assert (line, message) == (41, "over the YAML size limit of 200 bytes")


def test_aliases_cannot_nest_deeper_than_the_text() -> None:
    line, message = _error("a: &a [[1]]\nb: [[*a]]\n")
    assert (line, message) == (2, "b[0][0][0]: aliases nest it deeper than the YAML depth limit of 4")


def test_a_mapping_merged_into_itself_is_a_problem_not_a_recursion() -> None:
    doc = compose_yaml("a: &a {x: 1, <<: *a}\n", "f.yaml", LIMITS)
    assert doc.problems[0][1] == "a merge key refers to its own mapping"


def test_a_file_is_read_only_up_to_the_limit(tmp_path: Path) -> None:
    path = tmp_path / "big.yaml"
    path.write_bytes(b"a: x\n" * 10_000_000)  # 50 MB: only 201 bytes of it are read
    with pytest.raises(SpecError) as caught:
        load_yaml_file(path, LIMITS)
    [(where, message)] = caught.value.problems
    assert (where.file, where.line, message) == (str(path), 41, "over the YAML size limit of 200 bytes")
    path.write_bytes(b"a: 1\nb: \xff\n")
    with pytest.raises(SpecError, match=r"big.yaml:2: not UTF-8 text \(byte 8\)"):
        load_yaml_file(path, LIMITS)
