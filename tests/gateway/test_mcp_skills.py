"""Skills of the registry as MCP tools (``skill__NAME``) of the gateway, driven by the official ``mcp``
client: signed skills only, the newest version, the skill's own argument schema, its script run in the
sandbox as for an agent, and ``skills:run`` asked per identity."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from gateway_support import Keys, LiveServer
from mcp.shared.exceptions import MCPError
from mcp_gateway_support import mcp_session, texts, write_config

from shopfloor.config import Settings, load_settings
from shopfloor.errors import ConfigError
from shopfloor.gateway import build_server
from shopfloor.gateway.mcpgate import skill_sandbox_policy
from shopfloor.security import KeyStore, build_audit_log
from shopfloor.skills import SkillRegistry, generate_key, new_skill, sign_skill

#: prints where it ran and whether it could reach the network, to show the sandbox it ran in
PROBE = """
import json, os, socket, sys
args = json.load(sys.stdin)
try:
    socket.create_connection(("1.1.1.1", 53), timeout=2)
    net = "open"
except OSError:
    net = "blocked"
print(json.dumps({"result": args["text"].upper() + "@VERSION", "cwd": os.getcwd(), "net": net}))
"""


def _skill(parent: Path, name: str, version: str) -> Path:
    skill_dir = new_skill(name, parent / version)
    (skill_dir / "scripts" / "run.py").write_text(PROBE.replace("VERSION", version))
    md = skill_dir / "SKILL.md"
    md.write_text(md.read_text().replace('version: "0.1.0"', f'version: "{version}"'))
    return skill_dir


@pytest.fixture
def published(settings: Settings) -> None:
    """``shout`` 0.1.0 and 0.2.0 signed by a key of this machine; ``rogue`` unsigned, published while
    ``trust.require_signed`` was off (as it still is when the gateway starts)."""
    home = Path(os.environ["SHOPFLOOR_HOME"])
    write_config(home, "[trust]\nrequire_signed = false\n")
    settings = load_settings()
    key = generate_key("publisher", settings.home / "keys")
    parent = settings.home.parent / "skill-sources"
    registry = SkillRegistry.from_settings(settings)
    try:
        for version in ("0.1.0", "0.2.0"):
            skill_dir = _skill(parent, "shout", version)
            sign_skill(skill_dir, key.private_path)
            registry.publish(skill_dir)
        registry.publish(_skill(parent, "rogue", "1.0.0"))
    finally:
        registry.close()


@pytest.fixture
def operator(settings: Settings) -> str:
    """A key of a ``network-admin`` (``routes:call``, so it reaches /mcp, but no ``skills:run``)."""
    store = KeyStore.open(settings.db_url)
    try:
        return store.create("netops", role="network-admin", created_by="test")[1]
    finally:
        store.close()


@pytest.fixture
def served(published: None, keys: Keys, live: list[LiveServer]) -> str:
    live.append(LiveServer(build_server(load_settings(), worker=False)))
    return f"{live[-1].url}/mcp"


async def test_signed_skills_are_tools_that_run_in_the_sandbox(served: str, keys: Keys) -> None:
    async with mcp_session(served, keys.developer) as session:
        listed = {tool.name: tool for tool in (await session.list_tools()).tools}
        skills = sorted(name for name in listed if name.startswith("skill__"))
        assert skills == ["skill__shout"]  # the unsigned skill is not served, whatever trust allows
        schema = listed["skill__shout"].input_schema
        assert schema["properties"]["text"]["type"] == "string" and schema["required"] == ["text"]
        assert schema["additionalProperties"] is False

        result = await session.call_tool("skill__shout", {"text": "abc"})
        assert not result.is_error, texts(result)
        assert result.structured_content is not None
        assert result.structured_content["result"] == "ABC@0.2.0"  # the newest version
        # the script ran as an agent's does: in the sandbox's throw-away workspace, without network
        assert result.structured_content["cwd"] == "/workspace"
        assert result.structured_content["net"] == "blocked"

        refused = await session.call_tool("skill__shout", {"text": 5})
        assert refused.is_error and "invalid arguments" in texts(refused) and "text" in texts(refused)

        with pytest.raises(MCPError, match="no tool 'skill__rogue'"):
            await session.call_tool("skill__rogue", {"text": "x"})


async def test_a_principal_without_skills_run_neither_sees_nor_calls_them(
    served: str, operator: str, keys: Keys
) -> None:
    async with mcp_session(served, operator) as session:
        names = [tool.name for tool in (await session.list_tools()).tools]
        assert not [name for name in names if name.startswith("skill__")]
        with pytest.raises(MCPError, match="no tool 'skill__shout'"):
            await session.call_tool("skill__shout", {"text": "abc"})
    with build_audit_log(load_settings()) as audit:
        denied = [e for e in audit.entries() if e.kind == "permission.denied"]
    assert any(e.details["permission"] == "skills:run" and e.actor.startswith("key:") for e in denied), denied


def test_the_skill_sandbox_setting_is_checked_and_applied(settings: Settings) -> None:
    home = Path(os.environ["SHOPFLOOR_HOME"])
    write_config(home, '[mcp]\nskill_sandbox = {memory = "lots"}\n')
    with pytest.raises(ConfigError, match=r"mcp\.skill_sandbox\.memory: .*256M"):
        skill_sandbox_policy(load_settings())
    write_config(home, "[mcp]\nskill_sandbox = {timout = 5}\n")
    with pytest.raises(ConfigError, match=r"mcp\.skill_sandbox\.timout: "):
        skill_sandbox_policy(load_settings())
    write_config(home, '[mcp]\nskill_sandbox = {timeout = 5, memory = "256M"}\n')
    policy = skill_sandbox_policy(load_settings())
    assert policy.timeout == 5 and policy.memory == 256 << 20


async def test_a_skill_is_served_once_its_signer_is_trusted(
    settings: Settings, keys: Keys, live: list[LiveServer], tmp_path: Path
) -> None:
    home = Path(os.environ["SHOPFLOOR_HOME"])
    write_config(home, "[trust]\nrequire_signed = false\n\n[mcp]\nlist_ttl = 0\n")
    partner = generate_key("partner", tmp_path / "partner-keys")  # not a key of this machine
    skill_dir = _skill(tmp_path / "sources", "echoer", "1.0.0")
    sign_skill(skill_dir, partner.private_path)
    registry = SkillRegistry.from_settings(load_settings())
    try:
        registry.publish(skill_dir)
    finally:
        registry.close()
    live.append(LiveServer(build_server(load_settings(), worker=False)))
    async with mcp_session(f"{live[-1].url}/mcp", keys.developer) as session:
        assert "skill__echoer" not in {tool.name for tool in (await session.list_tools()).tools}
        (home / "keys").mkdir(exist_ok=True)
        (home / "keys" / "partner.pub").write_text(partner.public_path.read_text())
        assert "skill__echoer" in {tool.name for tool in (await session.list_tools()).tools}
        result = await session.call_tool("skill__echoer", {"text": "hi"})
        assert not result.is_error and result.structured_content is not None
        assert result.structured_content["result"] == "HI@1.0.0"
