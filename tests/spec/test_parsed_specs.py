"""Specs parsed once (``ParsedSpecs``): the same text is not parsed again, and a load still sees every
change, in the spec or in what it references."""

from __future__ import annotations

from pathlib import Path

import pytest

from shopfloor.errors import SpecError
from shopfloor.runtime import agent_resolvers
from shopfloor.spec import ParsedSpecs, load_spec

RESOLVERS = agent_resolvers()


def make_agent(root: Path) -> Path:
    root.mkdir(parents=True)
    (root / "agent.yaml").write_text(
        "name: helper\nversion: 1.2.0\ntools:\n  - name: convert\n    source: tools.py:convert\n"
    )
    (root / "tools.py").write_text("def convert(x: float) -> float:\n    return x * 1.609\n")
    return root


def test_the_same_text_is_parsed_once_and_digests_as_a_fresh_load(tmp_path: Path) -> None:
    agent = make_agent(tmp_path / "agent")
    parsed = ParsedSpecs()
    first = load_spec(agent, resolvers=RESOLVERS, parsed=parsed)
    again = load_spec(agent, resolvers=RESOLVERS, parsed=parsed)
    fresh = load_spec(agent, resolvers=RESOLVERS)
    assert again.spec is first.spec
    assert again.digest == first.digest == fresh.digest
    assert again.spec == fresh.spec


def test_a_changed_spec_is_parsed_again(tmp_path: Path) -> None:
    agent = make_agent(tmp_path / "agent")
    parsed = ParsedSpecs()
    first = load_spec(agent, resolvers=RESOLVERS, parsed=parsed)
    text = (agent / "agent.yaml").read_text()
    (agent / "agent.yaml").write_text(text.replace("version: 1.2.0", "version: 1.3.0"))
    changed = load_spec(agent, resolvers=RESOLVERS, parsed=parsed)
    assert changed.spec.version == "1.3.0"
    assert changed.digest != first.digest


def test_a_changed_reference_changes_the_digest_of_a_parsed_spec(tmp_path: Path) -> None:
    agent = make_agent(tmp_path / "agent")
    parsed = ParsedSpecs()
    first = load_spec(agent, resolvers=RESOLVERS, parsed=parsed)
    (agent / "tools.py").write_text("def convert(x: float) -> float:\n    return x * 1.6\n")
    changed = load_spec(agent, resolvers=RESOLVERS, parsed=parsed)
    assert changed.spec is first.spec  # the text is the same
    assert changed.digest != first.digest
    assert changed.digest == load_spec(agent, resolvers=RESOLVERS).digest


def test_an_invalid_spec_fails_every_load_with_its_location(tmp_path: Path) -> None:
    agent = make_agent(tmp_path / "agent")
    (agent / "agent.yaml").write_text("name: helper\nmodle: test\n")
    parsed = ParsedSpecs()
    for _ in range(2):
        with pytest.raises(SpecError, match=r"agent.yaml:2"):
            load_spec(agent, resolvers=RESOLVERS, parsed=parsed)


def test_only_the_most_recently_used_are_kept(tmp_path: Path) -> None:
    parsed = ParsedSpecs(size=2)
    agents = [make_agent(tmp_path / f"a{i}") for i in range(3)]
    loads = [load_spec(agent, resolvers=RESOLVERS, parsed=parsed) for agent in agents]
    assert load_spec(agents[2], resolvers=RESOLVERS, parsed=parsed).spec is loads[2].spec
    assert load_spec(agents[0], resolvers=RESOLVERS, parsed=parsed).spec is not loads[0].spec
