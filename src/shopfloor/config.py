"""Settings in one place: defaults, then the config file, then the environment.

The data dir is ``SHOPFLOOR_HOME`` (default ``~/.shopfloor``). The config file is
``$SHOPFLOOR_HOME/config.toml`` unless ``SHOPFLOOR_CONFIG`` names another. Any
setting can be overridden from the environment as ``SHOPFLOOR_<SECTION>__<KEY>``
(for example ``SHOPFLOOR_OPENAI__BASE_URL``); a few common ones have short names
(``SHOPFLOOR_DATABASE_URL``, ``OPENAI_BASE_URL``, ``OPENAI_API_KEY``).

Settings are read once by the entry point (CLI, gateway, worker) and passed down
explicitly; library code never reads the environment itself.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from shopfloor.errors import ConfigError

__all__ = [
    "ModelSettings",
    "OpenAISettings",
    "RuntimeSettings",
    "SandboxSettings",
    "Settings",
    "TelemetrySettings",
    "TrustSettings",
    "WorkspaceSettings",
    "load_settings",
]


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class OpenAISettings(_Section):
    base_url: str = "https://api.openai.com/v1"
    api_key: str | None = None
    timeout: float = 60.0
    max_retries: int = 3
    # How to ask for schema-constrained JSON: OpenAI, vLLM, NIM and llama-server take
    # "json_schema"; llama-cpp-python's server takes {"type": "json_object", "schema": ...}.
    structured_output: Literal["json_schema", "json_object"] = "json_schema"


class ModelSettings(_Section):
    default: str = "local:qwen2.5-coder-0.5b"
    context_length: int = 4096
    threads: int | None = None


class WorkspaceSettings(_Section):
    url: str | None = None  # default: file://$SHOPFLOOR_HOME/workspaces
    keep_last: int | None = None
    keep_days: float | None = None


class SandboxSettings(_Section):
    backend: str = "auto"
    #: tenant uids are allocated from [uid_base, uid_base + uid_count), one per tenant, never shared
    uid_base: Annotated[int, Field(ge=1)] = 200000
    uid_count: Annotated[int, Field(ge=1)] = 65536
    #: the allocation table (default $SHOPFLOOR_HOME/sandbox/tenants.db); installs sharing a host share it,
    #: or take disjoint uid ranges, else each hands out the same uids
    uid_table: Path | None = None


class TrustSettings(_Section):
    require_signed: bool = True
    trusted_keys: list[str] = Field(default_factory=list)
    strict_skills: bool = True


class TelemetrySettings(_Section):
    #: runs executed by the runtime are traced; off, ``shopfloor trace`` and the metrics have no data
    #: for them (replay still works: it reads the steps DBOS recorded)
    enabled: bool = True
    otlp_http_endpoint: str | None = None
    otlp_grpc_endpoint: str | None = None
    record_content: bool = False
    json_logs: bool = False
    store_url: str | None = (
        None  # default: the PostgreSQL database_url, else sqlite $SHOPFLOOR_HOME/traces.db
    )
    store_content: bool = True  # step outputs, task and answer in the local store (what replay needs)
    prices: dict[str, tuple[float, float]] = Field(
        default_factory=dict
    )  # model ref -> USD per 1M in/out tokens
    otlp_metrics: bool = False  # also send metrics to the OTLP endpoints (trace-only receivers refuse them)


class RuntimeSettings(_Section):
    worker_concurrency: int = Field(4, ge=1, description="runs one worker executes at once")
    agent_concurrency: int | None = Field(None, ge=1, description="runs of one agent at once, all workers")
    agent_rate_limit: int | None = Field(None, ge=1, description="runs of one agent started per period")
    agent_rate_period: float = Field(60.0, gt=0)
    heartbeat: float = Field(2.0, gt=0, description="seconds between executor heartbeats")
    executor_timeout: float = Field(10.0, gt=0, description="silence after which an executor's runs recover")
    poll_interval: float = Field(0.2, gt=0, description="queue and event polling, seconds")
    #: on SQLite DBOS polls once per waiting run per interval (PostgreSQL uses LISTEN/NOTIFY)
    message_poll: float = Field(1.0, gt=0, description="how often waiting runs check for approvals, seconds")
    #: lean: DBOS's step rows written by runtime/_recorder.py; dbos: DBOS's own path (comparison, way out)
    step_recorder: Literal["lean", "dbos"] = "lean"
    #: sync: every step committed before the next starts; batched: model and schema steps are
    #: committed with the next step (a tool, an approval, a sleep and the run's end flush first)
    durability: Literal["sync", "batched"] = "sync"


class Settings(_Section):
    home: Path
    database_url: str | None = None  # default: sqlite under home
    openai: OpenAISettings = Field(default_factory=OpenAISettings)
    models: ModelSettings = Field(default_factory=ModelSettings)
    workspace: WorkspaceSettings = Field(default_factory=WorkspaceSettings)
    sandbox: SandboxSettings = Field(default_factory=SandboxSettings)
    trust: TrustSettings = Field(default_factory=TrustSettings)
    telemetry: TelemetrySettings = Field(default_factory=TelemetrySettings)
    runtime: RuntimeSettings = Field(default_factory=RuntimeSettings)  # type: ignore[arg-type]

    @property
    def db_url(self) -> str:
        return self.database_url or f"sqlite:///{self.home / 'shopfloor.db'}"

    @property
    def models_dir(self) -> Path:
        return self.home / "models"

    @property
    def workspace_url(self) -> str:
        return self.workspace.url or f"file://{self.home / 'workspaces'}"

    def ensure_home(self) -> Path:
        self.home.mkdir(parents=True, exist_ok=True)
        return self.home


_SHORT_NAMES = {
    "SHOPFLOOR_DATABASE_URL": ("database_url",),
    "OPENAI_BASE_URL": ("openai", "base_url"),
    "OPENAI_API_KEY": ("openai", "api_key"),
    "SHOPFLOOR_MODEL": ("models", "default"),
}


def _set(data: dict[str, Any], path: tuple[str, ...], value: str) -> None:
    node = data
    for key in path[:-1]:
        node = node.setdefault(key, {})
        if not isinstance(node, dict):
            raise ConfigError(f"environment override {'.'.join(path)}: {key} is not a section")
    node[path[-1]] = value


def load_settings(env: Mapping[str, str] | None = None) -> Settings:
    """Build the settings from defaults, the config file and ``env`` (default: os.environ)."""
    env = os.environ if env is None else env
    home = Path(env.get("SHOPFLOOR_HOME") or Path.home() / ".shopfloor").expanduser()
    config_file = Path(env.get("SHOPFLOOR_CONFIG") or home / "config.toml")
    data: dict[str, Any] = {}
    if config_file.is_file():
        try:
            data = tomllib.loads(config_file.read_text())
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{config_file}: invalid TOML: {exc}") from exc
    data["home"] = str(home)
    for name, path in _SHORT_NAMES.items():
        if env.get(name):
            _set(data, path, env[name])
    for name, value in env.items():
        if name.startswith("SHOPFLOOR_") and "__" in name:
            path = tuple(part.lower() for part in name.removeprefix("SHOPFLOOR_").split("__"))
            _set(data, path, value)
    try:
        return Settings.model_validate(data)
    except ValidationError as exc:
        lines = [f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in exc.errors()]
        raise ConfigError(
            f"invalid settings (from {config_file} and the environment):\n  " + "\n  ".join(lines)
        ) from exc
