"""``connectors:`` in agent.yaml: the issue's shape, errors with file:line, the digest."""

from __future__ import annotations

from pathlib import Path

import pytest

from shopfloor.errors import SpecError
from shopfloor.spec import load_spec, parse_spec, spec_resolvers

RESOLVERS = spec_resolvers()

ISSUE_EXAMPLE = """\
name: analyst
connectors:
  - name: everything
    mcp: {command: [npx, -y, "@modelcontextprotocol/server-everything"], env: {API_TOKEN: "secret:EVERYTHING"}}
    tools: [echo, add]                       # optional allow-list
  - name: docs
    mcp: {url: "http://127.0.0.1:9000/mcp", headers: {Authorization: "secret:DOCS_TOKEN"}}
  - name: warehouse
    sql: {url: "postgresql://reader@127.0.0.1:5432/warehouse"}
"""  # noqa: E501 (the issue's example, verbatim)


def test_the_issues_example_loads() -> None:
    spec, _ = parse_spec(ISSUE_EXAMPLE)
    everything, docs, warehouse = spec.connectors
    assert everything.mcp is not None and everything.mcp.command == [
        "npx",
        "-y",
        "@modelcontextprotocol/server-everything",
    ]
    assert everything.mcp.env == {"API_TOKEN": "secret:EVERYTHING"}
    assert everything.tools == ["echo", "add"]
    assert docs.mcp is not None and docs.mcp.url == "http://127.0.0.1:9000/mcp"
    assert docs.mcp.headers == {"Authorization": "secret:DOCS_TOKEN"}
    assert warehouse.sql is not None and warehouse.sql.row_limit == 200


def problems(text: str, tmp_path: Path) -> list[tuple[int | None, str]]:
    path = tmp_path / "agent.yaml"
    path.write_text(text)
    with pytest.raises(SpecError) as info:
        load_spec(path, resolvers=RESOLVERS)
    for loc, _ in info.value.problems:
        assert loc.file == str(path)
    return [(loc.line, message) for loc, message in info.value.problems]


@pytest.mark.parametrize(
    ("body", "line", "message"),
    [
        ("  - name: a\n    mcp: {comand: [x]}\n", 4, "comand"),
        ("  - name: a\n    mcp: {command: [x], url: 'http://h/mcp'}\n", 4, "either command"),
        ("  - name: a\n    mcp: {url: 'http://h/mcp', env: {A: b}}\n", 4, "env is for a stdio server"),
        ("  - name: a\n    mcp: {url: 'ftp://h/mcp'}\n", 4, "http:// or https://"),
        ("  - name: a\n    mcp: {url: 'http://h/mcp', headers: {X: 'secret:bad name'}}\n", 4, "secret:NAME"),
        ("  - name: a\n    mcp: {command: []}\n", 4, "at least 1"),
        ("  - name: a\n    sql: {url: 'mysql://h/db'}\n", 4, "postgresql:// or sqlite:///"),
        ("  - name: a\n    sql: {url: 'sqlite:///x.db', row_limit: 0}\n", 4, "expected a number >= 1"),
        ("  - name: a\n", 3, "one of mcp"),
        ("  - name: Bad Name\n    sql: {url: 'sqlite:///x.db'}\n", 3, "lowercase"),
        (
            "  - {name: a, sql: {url: 'sqlite:///x.db'}}\n  - {name: a, sql: {url: 'sqlite:///y.db'}}\n",
            3,
            "used more than once: a",
        ),
    ],
)
def test_mistakes_are_reported_at_their_line(tmp_path: Path, body: str, line: int, message: str) -> None:
    found = problems(f"name: analyst\nconnectors:\n{body}", tmp_path)
    assert any(at == line and message in text for at, text in found), found


def test_connectors_are_part_of_the_digest_but_secrets_only_by_name() -> None:
    _, base = parse_spec("name: analyst\n")
    _, empty = parse_spec("name: analyst\nconnectors: []\n")
    _, with_sql = parse_spec("name: analyst\nconnectors: [{name: w, sql: {url: 'sqlite:///a.db'}}]\n")
    _, other_sql = parse_spec("name: analyst\nconnectors: [{name: w, sql: {url: 'sqlite:///b.db'}}]\n")
    assert base == empty
    assert len({base, with_sql, other_sql}) == 3


def test_an_agent_without_connectors_keeps_its_earlier_digest() -> None:
    # The digest of this spec before connectors existed (computed on the commit before them).
    _, digest = parse_spec("name: analyst\n")
    assert digest == PINNED


PINNED = "sha256:f880bf007619f24767fd6ed5be542a37155bdfa2d2d7928ce11f40081d8e2dce"


# <NL> marks where each case puts the YAML escape \n (a newline ending the value) into a valid connector.
NEWLINE_CASES = [
    ('  - name: "docs<NL>"\n    sql: {url: "sqlite:///x.db"}\n', 3, "lowercase"),
    (
        '  - name: a\n    mcp: {command: [x], env: {"API_TOKEN<NL>": b}}\n',
        4,
        "not an environment variable name",
    ),
    ('  - name: a\n    mcp: {command: [x], env: {A: "secret:TOKEN<NL>"}}\n', 4, "secret:NAME"),
    (
        '  - name: a\n    mcp: {url: "http://h/mcp", headers: {"X-Api-Key<NL>": b}}\n',
        4,
        "not an HTTP header name",
    ),
    (
        '  - name: a\n    a2a: {url: "http://h/a2a", headers: {"Authorization<NL>": b}}\n',
        4,
        "not an HTTP header name",
    ),
    ('  - name: a\n    sql: {url: "secret:WAREHOUSE_URL<NL>"}\n', 4, "secret:NAME"),
    ('  - name: a\n    docs: {collection: "notes<NL>"}\n', 4, "collection"),
    (
        '  - name: a\n    docs: {collection: notes, research: {report_dir: "out/reports<NL>"}}\n',
        4,
        "report_dir",
    ),
]


@pytest.mark.parametrize(("template", "line", "message"), NEWLINE_CASES)
def test_a_name_ending_in_a_newline_is_refused(
    tmp_path: Path, template: str, line: int, message: str
) -> None:
    """Python's ``$`` matches before a final newline; the checks end at the end of the text."""
    valid = tmp_path / "valid" / "agent.yaml"
    valid.parent.mkdir()
    valid.write_text("name: analyst\nconnectors:\n" + template.replace("<NL>", ""))
    assert len(load_spec(valid, resolvers=RESOLVERS).spec.connectors) == 1
    found = problems("name: analyst\nconnectors:\n" + template.replace("<NL>", "\\n"), tmp_path)
    assert [(at, message in text) for at, text in found] == [(line, True)], found
