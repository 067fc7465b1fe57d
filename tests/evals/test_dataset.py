"""Datasets in JSONL, CSV and YAML: the same items, a content digest, and errors that name file:line."""

from __future__ import annotations

from pathlib import Path

import pytest

from shopfloor.errors import SpecError
from shopfloor.evals import load_dataset, load_datasets


def test_the_three_formats_give_the_same_items(tmp_path: Path) -> None:
    (tmp_path / "a.jsonl").write_text(
        '{"id": "q1", "input": "What?", "expected": 284.5, "tags": ["single"]}\n\n'
        '{"id": 2, "input": {"q": "x"}, "reference": ["d1"], "metadata": {"src": "m"}}\n'
    )
    (tmp_path / "a.csv").write_text(
        'id,input,expected,tags,src\nq1,What?,284.5,single,\n2,"{""q"": ""x""}",,,m\n'
    )
    (tmp_path / "a.yaml").write_text(
        "items:\n  - {id: q1, input: What?, expected: 284.5, tags: [single]}\n"
        "  - {id: 2, input: {q: x}, reference: [d1], metadata: {src: m}}\n"
    )
    jsonl, csv_, yaml_ = (load_dataset(tmp_path / f"a.{ext}") for ext in ("jsonl", "csv", "yaml"))
    assert (
        [i.id for i in jsonl.items]
        == [i.id for i in csv_.items]
        == [i.id for i in yaml_.items]
        == ["q1", "2"]
    )
    assert jsonl.items[0].expected == csv_.items[0].expected == yaml_.items[0].expected == 284.5
    assert jsonl.items[0].tags == csv_.items[0].tags == ("single",)
    assert jsonl.items[1].input == '{"q": "x"}' == yaml_.items[1].input
    assert jsonl.items[1].reference == ["d1"] == yaml_.items[1].reference
    assert csv_.items[1].metadata == {"src": "m"}
    assert jsonl.digest.startswith("sha256:") and jsonl.digest != csv_.digest
    assert load_dataset(tmp_path / "a.jsonl").digest == jsonl.digest, "the digest is of the content"


@pytest.mark.parametrize(
    ("name", "text", "where", "what"),
    [
        ("d.jsonl", '{"id": "a", "input": "x"}\n{"id": "b", "input": \n', ":2", "invalid JSON"),
        (
            "d.jsonl",
            '{"id": "a", "input": "x"}\n{"id": "a", "input": "y"}\n',
            ":2",
            "duplicate item id 'a' (first at line 1)",
        ),
        ("d.jsonl", '{"id": "a", "input": "x", "expectd": 1}\n', ":1", "expectd"),
        ("d.jsonl", '{"id": "a"}\n', ":1", "input"),
        ("d.yaml", "items:\n  - {id: a, input: x}\n  - [1, 2]\n", ":3", "expected an item mapping"),
        ("d.csv", "id,input\na,x,extra\n", ":2", "more cells"),
        ("d.txt", "x", "d.txt", "unknown dataset format"),
        ("d.jsonl", "\n", "d.jsonl", "no items"),
    ],
)
def test_bad_datasets_name_file_and_line(tmp_path: Path, name: str, text: str, where: str, what: str) -> None:
    (tmp_path / name).write_text(text)
    with pytest.raises(SpecError) as caught:
        load_dataset(tmp_path / name)
    assert where in str(caught.value) and what in str(caught.value)


def test_ids_must_be_unique_across_datasets(tmp_path: Path) -> None:
    for name in ("a", "b"):
        (tmp_path / f"{name}.jsonl").write_text('{"id": "same", "input": "x"}\n')
    with pytest.raises(SpecError, match="repeated across datasets: same"):
        load_datasets([tmp_path / "a.jsonl", tmp_path / "b.jsonl"])
