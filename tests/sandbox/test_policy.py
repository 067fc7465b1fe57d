from __future__ import annotations

from typing import get_args

import pytest

from shopfloor.errors import SandboxPolicyError
from shopfloor.sandbox import ExecResult, Mount, NetworkRule, SandboxPolicy, parse_size, sandbox_backends
from shopfloor.spec import Isolation, SandboxPolicySpec


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("256M", 256 << 20),
        ("1G", 1 << 30),
        ("1.5GiB", 3 << 29),
        ("4096", 4096),
        ("64k", 64 << 10),
        ("2T", 2 << 40),
    ],
)
def test_parse_size(text: str, expected: int) -> None:
    assert parse_size(text) == expected


@pytest.mark.parametrize("text", ["", "12X", "-1M", "M", "1 G B"])
def test_parse_size_rejects(text: str) -> None:
    with pytest.raises(SandboxPolicyError, match="256M or 1G"):
        parse_size(text)


def test_from_spec_converts_sizes_and_network() -> None:
    spec = SandboxPolicySpec(
        memory="512M", disk="2G", network=["api.example.com:443", "10.0.0.1:8080"], pids=32
    )
    policy = SandboxPolicy.from_spec(spec)
    assert policy.memory == 512 << 20
    assert policy.disk == 2 << 30
    assert policy.pids == 32
    assert policy.network == (
        NetworkRule(host="api.example.com", port=443),
        NetworkRule(host="10.0.0.1", port=8080),
    )
    assert policy.allows_network
    assert not SandboxPolicy.from_spec(SandboxPolicySpec()).allows_network


@pytest.mark.parametrize(
    "entry",
    [
        "example.com",
        "example.com:0",
        "example.com:99999",
        ":80",
        "a b:80",
        "example.com\n:443",
        "[::1]\n:443",
    ],
)
def test_network_rule_rejects(entry: str) -> None:
    with pytest.raises(SandboxPolicyError, match="HOST:PORT"):
        NetworkRule.parse(entry)


def test_network_rule_accepts_a_name_and_a_bracketed_address() -> None:
    assert NetworkRule.parse("Example.com:443") == NetworkRule(host="example.com", port=443)
    assert NetworkRule.parse("[::1]:8080") == NetworkRule(host="::1", port=8080)


def test_parse_network_forms() -> None:
    assert SandboxPolicy.parse_network("none") == ()
    assert SandboxPolicy.parse_network(None) == ()
    assert SandboxPolicy.parse_network("a.b:1, c.d:2") == (
        NetworkRule(host="a.b", port=1),
        NetworkRule(host="c.d", port=2),
    )


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [("memory", 1024, "memory"), ("cpus", 0, "cpus"), ("pids", 0, "pids"), ("timeout", 0, "timeout")],
)
def test_policy_validates(field: str, value: float, message: str) -> None:
    with pytest.raises(SandboxPolicyError, match=message):
        SandboxPolicy(**{field: value})  # type: ignore[arg-type]


def test_address_space_defaults_above_memory() -> None:
    policy = SandboxPolicy(memory=256 << 20)
    assert policy.rlimit_as > policy.memory
    assert SandboxPolicy(address_space=0).rlimit_as == 0


def test_mount_target_must_be_absolute() -> None:
    with pytest.raises(SandboxPolicyError, match="absolute"):
        Mount(host_path=__import__("pathlib").Path("/usr"), sandbox_path="usr")
    with pytest.raises(SandboxPolicyError, match=r"\.\."):
        Mount(host_path=__import__("pathlib").Path("/usr"), sandbox_path="/a/../b")


def test_exec_result_to_dict() -> None:
    result = ExecResult(
        exit_code=0, stdout=b"hi\xff", stderr=b"", wall_time=0.1, cpu_time=0.05, peak_memory=1
    )
    data = result.to_dict()
    assert data["stdout"] == "hi\ufffd"
    assert result.ok and not result.truncated


def test_the_spec_names_exactly_the_built_in_backends() -> None:
    """One list of backend names: the spec's ``isolation`` type, read by the sandbox policy."""
    assert set(get_args(Isolation)) == {"auto", *sandbox_backends().names()}
