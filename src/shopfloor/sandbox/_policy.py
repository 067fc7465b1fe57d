"""What a sandbox enforces (policy), what it sees (mounts) and what an exec returns (result)."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from shopfloor.errors import SandboxPolicyError
from shopfloor.spec import Isolation

if TYPE_CHECKING:
    from shopfloor.spec import SandboxPolicySpec

__all__ = [
    "Command",
    "ExecRequest",
    "ExecResult",
    "KilledBy",
    "Mount",
    "NetworkRule",
    "SandboxPolicy",
    "parse_size",
]

KilledBy = Literal["timeout", "memory", "pids", "output"]

_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([KMGT]?)(i?)(B?)\s*$", re.IGNORECASE)
_UNITS = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}
_HOST = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9.-]{0,252})\Z|^\[[0-9A-Fa-f:.]+\]\Z")


def parse_size(value: str | int) -> int:
    """Bytes in ``256M``, ``1G``, ``1.5GiB``, ``4096``; units are powers of 1024."""
    if isinstance(value, int):
        if value < 0:
            raise SandboxPolicyError(f"size must not be negative, got {value}")
        return value
    match = _SIZE.match(value)
    if not match:
        raise SandboxPolicyError(f"expected a size such as 256M or 1G, got {value!r}")
    number, unit, _, _ = match.groups()
    return int(float(number) * _UNITS[unit.upper()])


@dataclass(frozen=True, kw_only=True)
class NetworkRule:
    """One destination the allow-listing proxy lets through."""

    host: str
    port: int

    @classmethod
    def parse(cls, text: str) -> NetworkRule:
        host, sep, port = text.strip().rpartition(":")
        if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536 or not _HOST.match(host):
            raise SandboxPolicyError(
                f"network entries are HOST:PORT (for example api.example.com:443), got {text!r}"
            )
        return cls(host=host.lower().strip("[]"), port=int(port))

    def __str__(self) -> str:
        return f"{self.host}:{self.port}"


@dataclass(frozen=True, kw_only=True)
class SandboxPolicy:
    """Limits for one sandbox. Sizes are bytes; ``network`` empty means no network at all."""

    isolation: Isolation = "auto"
    network: tuple[NetworkRule, ...] = ()
    memory: int = 1 << 30
    cpus: float = 1.0
    pids: int = 128
    timeout: float = 30.0
    disk: int = 1 << 30  # bytes of the whole writable area (workspace changes and /tmp together)
    files: int = 1 << 16  # files and directories the sandbox may create there
    max_output: int = 1 << 20
    nofile: int = 256
    # RLIMIT_AS is only the second bound (the cgroup is the first); runtimes reserve far more address
    # space than they touch, so it is set well above the memory limit. 0 means unlimited.
    address_space: int | None = None
    # Egress through the proxy, per sandbox: connections open at once, new connections a second, and
    # whether allow-listed names may resolve to loopback, link-local or private addresses.
    egress_connections: int = 32
    egress_rate: float = 20.0
    network_private: bool = False

    def __post_init__(self) -> None:
        if self.memory < 4 << 20:
            raise SandboxPolicyError(f"memory must be at least 4M, got {self.memory} bytes")
        if self.cpus <= 0:
            raise SandboxPolicyError(f"cpus must be positive, got {self.cpus}")
        if self.pids < 1:
            raise SandboxPolicyError(f"pids must be at least 1, got {self.pids}")
        if self.timeout <= 0:
            raise SandboxPolicyError(f"timeout must be positive, got {self.timeout}")
        if self.disk < 1 << 20:
            raise SandboxPolicyError(f"disk must be at least 1M, got {self.disk} bytes")
        if self.files < 16:
            raise SandboxPolicyError(f"files must be at least 16, got {self.files}")
        if self.max_output < 1:
            raise SandboxPolicyError("max_output must be positive")
        if self.nofile < 16:
            raise SandboxPolicyError(f"nofile must be at least 16, got {self.nofile}")
        if self.egress_connections < 1:
            raise SandboxPolicyError(f"egress_connections must be at least 1, got {self.egress_connections}")
        if self.egress_rate <= 0:
            raise SandboxPolicyError(f"egress_rate must be positive, got {self.egress_rate}")

    @property
    def rlimit_as(self) -> int:
        if self.address_space is None:
            return 2 * self.memory + (512 << 20)
        return self.address_space

    @property
    def allows_network(self) -> bool:
        return bool(self.network)

    @classmethod
    def from_spec(cls, spec: SandboxPolicySpec) -> SandboxPolicy:
        network = () if spec.network == "none" else tuple(NetworkRule.parse(item) for item in spec.network)
        return cls(
            isolation=spec.isolation,
            network=network,
            memory=parse_size(spec.memory),
            cpus=spec.cpus,
            pids=spec.pids,
            timeout=spec.timeout,
            disk=parse_size(spec.disk),
        )

    @staticmethod
    def parse_network(value: str | list[str] | None) -> tuple[NetworkRule, ...]:
        """``none``, ``""``, ``HOST:PORT,HOST:PORT`` or a list of ``HOST:PORT``."""
        if value is None:
            return ()
        items = value.split(",") if isinstance(value, str) else value
        items = [item.strip() for item in items if item.strip()]
        if items in ([], ["none"]):
            return ()
        return tuple(NetworkRule.parse(item) for item in items)


@dataclass(frozen=True, kw_only=True)
class Mount:
    """A host directory or file shown inside the sandbox at ``sandbox_path`` (absolute)."""

    host_path: Path
    sandbox_path: str
    read_only: bool = True

    def __post_init__(self) -> None:
        if not self.sandbox_path.startswith("/") or ".." in self.sandbox_path.split("/"):
            raise SandboxPolicyError(
                f"mount target must be an absolute path without '..', got {self.sandbox_path!r}"
            )


@dataclass(frozen=True, kw_only=True)
class Command:
    """What one exec runs: the program, its input and environment, how long it may take."""

    argv: tuple[str, ...]
    stdin: bytes = b""
    env: Mapping[str, str] | None = None
    #: seconds; None: the policy's timeout
    timeout: float | None = None


@dataclass(frozen=True, kw_only=True)
class ExecRequest:
    """One command to run in a fresh sandbox: what (``command``), where, as whom, under which policy."""

    policy: SandboxPolicy
    command: Command
    #: the host directory mounted read-write at /workspace
    workspace: Path
    #: the tenant the command runs as (its uid is derived from the name)
    tenant: str
    mounts: tuple[Mount, ...] = ()


@dataclass(frozen=True, kw_only=True)
class ExecResult:
    """What one command did. ``killed_by`` says why the sandbox stopped it, if it did."""

    exit_code: int
    stdout: bytes
    stderr: bytes
    stdout_truncated: bool = False
    stderr_truncated: bool = False
    wall_time: float
    cpu_time: float
    peak_memory: int
    killed_by: KilledBy | None = None
    backend: str = ""
    warnings: tuple[str, ...] = field(default=())

    @property
    def truncated(self) -> bool:
        return self.stdout_truncated or self.stderr_truncated

    @property
    def ok(self) -> bool:
        return self.exit_code == 0 and self.killed_by is None

    def to_dict(self) -> dict[str, object]:
        return {
            "exit_code": self.exit_code,
            "stdout": self.stdout.decode("utf-8", "replace"),
            "stderr": self.stderr.decode("utf-8", "replace"),
            "stdout_truncated": self.stdout_truncated,
            "stderr_truncated": self.stderr_truncated,
            "wall_time": round(self.wall_time, 6),
            "cpu_time": round(self.cpu_time, 6),
            "peak_memory": self.peak_memory,
            "killed_by": self.killed_by,
            "backend": self.backend,
            "warnings": list(self.warnings),
        }
