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

import json
import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from shopfloor.errors import ConfigError

__all__ = [
    "GITOPS_POLICY",
    "POLICY_SECTIONS",
    "AuditSettings",
    "BindingSettings",
    "ClientSettings",
    "ConsoleSettings",
    "DocsSettings",
    "EvalSettings",
    "GatewaySettings",
    "GitOpsSettings",
    "LimitSettings",
    "McpGatewaySettings",
    "McpPolicySettings",
    "McpUpstreamSettings",
    "ModelSettings",
    "OIDCSettings",
    "OpenAISettings",
    "ReleaseSettings",
    "RoleSettings",
    "RouteSettings",
    "RuntimeSettings",
    "SandboxSettings",
    "SecretsSettings",
    "SecuritySettings",
    "ServerSettings",
    "Settings",
    "TelemetrySettings",
    "TrustSettings",
    "UpstreamSettings",
    "WorkspaceSettings",
    "load_settings",
    "read_policy",
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
    #: a local model's threads; unset: every core, but only the idle ones when a generation starts
    threads: int | None = None
    #: disk kept for a local model's processed prompt prefixes, read by later processes; 0: none
    prompt_cache_mb: int = Field(256, ge=0)


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
    # On SQLite, DBOS polls for the messages a waiting run receives (PostgreSQL notifies): one indexed
    # read per waiting run per poll. Closing an executor waits for the poll's sleep to end (DBOS joins that
    # thread), so this is also what every `shopfloor run` or `eval run` pays on exit: 1 s cost ~0.8 s per
    # evaluation (Runtime.close 835 -> 56 ms at 0.2 s), and an approval is picked up 5x sooner.
    message_poll: float = Field(0.2, gt=0, description="how often waiting runs check for approvals, seconds")
    #: lean: DBOS's step rows written by runtime/_recorder.py; dbos: DBOS's own path (comparison, way out)
    step_recorder: Literal["lean", "dbos"] = "lean"
    #: sync: every step committed before the next starts; batched: model and schema steps are
    #: committed with the next step (a tool, an approval, a sleep and the run's end flush first)
    durability: Literal["sync", "batched"] = "sync"
    #: while this process executes runs, the cyclic garbage collector's young-generation threshold
    #: (the interpreter's is 700: a quarter of a busy worker's CPU went to collections); 0: leave it
    #: as the interpreter has it (runtime/_gc.py says what was measured)
    #: (at most 10,000,000: more would hold GBs of cyclic garbage, and the interpreter takes a C int)
    gc_threshold: int = Field(
        20_000, ge=0, le=10_000_000, description="young-generation GC threshold while executing runs"
    )
    #: freeze what the process holds when it starts executing runs (once a process): full collections
    #: then walk only what was made since
    gc_freeze: bool = True


class RoleSettings(_Section):
    #: permission patterns: ``runs:approve``, ``runs:*``, ``*:read``
    permissions: list[str]
    description: str = ""


class BindingSettings(_Section):
    #: a principal id (``key:ID``, ``oidc:ISSUER#SUBJECT``)
    principal: str
    role: str
    #: the team whose resources the role applies to; none: every team
    team: str | None = None


class AuditSettings(_Section):
    #: where the audit log lives; default: the main database
    url: str | None = None
    #: a signed checkpoint after this many entries
    checkpoint_every: int = Field(100, ge=1)
    #: ... and at the first entry this many seconds after the last signed one (bounds the unsigned tail)
    checkpoint_interval: float = Field(60.0, gt=0)
    #: the Ed25519 private key (PEM) checkpoints are signed with; default $SHOPFLOOR_HOME/audit/signing.pem
    signing_key: Path | None = None
    #: SIEM export: a JSON lines file, syslog over TCP and UDP (``HOST:PORT``)
    jsonl_file: Path | None = None
    syslog_tcp: str | None = None
    syslog_udp: str | None = None
    #: ... and OpenTelemetry logs to a collector's OTLP/HTTP endpoint (``http://HOST:4318/v1/logs``)
    otlp_logs: str | None = None


class SecretsSettings(_Section):
    #: where the data key comes from: ``file`` or ``env`` (or a provider registered by name)
    key_provider: str = "file"
    #: the file holding the base64 AES-256 key; default $SHOPFLOOR_HOME/secrets.key (made 0600 on first use)
    key_file: Path | None = None
    #: the environment variable holding it, for ``key_provider = "env"`` (default SHOPFLOOR_SECRETS_KEY)
    key_env: str | None = None


class LimitSettings(_Section):
    #: ``key:ID``, ``team:NAME``, ``agent:NAME``, ``route:NAME``; ``KIND:*`` for each one of a kind
    scope: str
    requests_per_minute: int | None = Field(None, ge=0)
    tokens_per_minute: int | None = Field(None, ge=0)
    tokens_per_day: int | None = Field(None, ge=0)
    #: in the currency of ``[telemetry] prices``
    spend_per_day: float | None = Field(None, ge=0)
    spend_per_month: float | None = Field(None, ge=0)
    concurrent_runs: int | None = Field(None, ge=0)


class SecuritySettings(_Section):
    roles: dict[str, RoleSettings] = Field(default_factory=dict)
    bindings: list[BindingSettings] = Field(default_factory=list)
    #: nobody may approve a call of a run they started
    separation_of_duties: bool = False
    audit: AuditSettings = Field(default_factory=AuditSettings)  # type: ignore[arg-type]
    secrets: SecretsSettings = Field(default_factory=SecretsSettings)
    limits: list[LimitSettings] = Field(default_factory=list)
    #: where budget counters live: ``database`` (the main one; in-process counters written behind),
    #: ``shared-database`` (the main one, exact across processes), ``memory``, a database URL,
    #: ``redis://...`` (exact across processes)
    counters: str = "database"
    #: a concurrent-run slot is held this many seconds unless the process running its run renews it
    #: (every third of it): a process that died gives its slots back after at most this long
    slot_lease_seconds: Annotated[float, Field(ge=1, le=3600)] = 30.0


class UpstreamSettings(_Section):
    """One replica of a gateway route: an OpenAI-compatible server (``kind = "openai"``: ``url``,
    ``model``, ``api_key``) or a Shopfloor model (``kind = "model"``: ``model = "local:NAME"``)."""

    kind: str = "openai"
    url: str | None = None  # the server's base URL, e.g. http://127.0.0.1:8000/v1
    model: str  # the model name the upstream knows (kind "openai") or the model reference (kind "model")
    #: the upstream's key, or ``secret:NAME`` (resolved by the secret store); never taken from the caller
    api_key: str | None = None
    weight: Annotated[float, Field(gt=0)] = 1.0
    #: names this replica in metrics and metering (default: the URL or the reference)
    name: str | None = None

    @model_validator(mode="after")
    def _url_for_servers(self) -> UpstreamSettings:
        if self.kind == "openai" and not self.url:
            raise ValueError("an upstream of kind 'openai' needs url (e.g. http://127.0.0.1:8000/v1)")
        return self


class GuardrailSettings(_Section):
    """A guardrail of a gateway route: ``"pii"``, or ``{ name = "deny-topics", options = { ... } }``."""

    name: str
    #: the guardrail's own options (pii: block, kinds; deny-topics: topics, stages)
    options: dict[str, Any] = Field(default_factory=dict)


class RouteSettings(_Section):
    """A model name clients ask for, served by ``upstreams`` (replicas), with retries and fallbacks."""

    upstreams: list[UpstreamSettings] = Field(min_length=1)
    balance: Literal["weighted", "least-busy"] = "weighted"
    timeout: Annotated[float, Field(gt=0)] = 60.0  # seconds per attempt; for a stream, until its first chunk
    retries: Annotated[int, Field(ge=0, le=10)] = 2  # tries after the first, across replicas
    #: other routes tried, in order, when this one fails or times out
    fallbacks: list[str] = Field(default_factory=list)
    #: checks on the request's messages (input) and the model's answer (output), in order
    guardrails: list[GuardrailSettings] = Field(default_factory=list)

    @field_validator("guardrails", mode="before")
    @classmethod
    def _guardrail_names(cls, value: Any) -> Any:
        if isinstance(value, list):
            return [{"name": item} if isinstance(item, str) else item for item in value]
        return value


class GatewaySettings(_Section):
    """The inference gateway (``/v1/chat/completions`` ...): ``[gateway.routes.NAME]`` and aliases."""

    routes: dict[str, RouteSettings] = Field(default_factory=dict)
    aliases: dict[str, str] = Field(default_factory=dict)  # alias -> route name
    #: serve every installed embedded model as ``local:NAME`` (routes of the same name win)
    serve_local_models: bool = True
    max_body_bytes: Annotated[int, Field(ge=1024)] = 4 * 1024 * 1024
    #: circuit breaker: this many failures in a row open a replica for ``breaker_cooldown`` seconds
    breaker_failures: Annotated[int, Field(ge=1)] = 5
    breaker_cooldown: Annotated[float, Field(gt=0)] = 30.0
    retry_base_delay: Annotated[float, Field(ge=0)] = 0.25
    max_retry_after: Annotated[float, Field(ge=0)] = 30.0
    #: metering records are written in batches, this often (seconds), never on the request path
    meter_flush_interval: Annotated[float, Field(gt=0)] = 1.0
    meter_url: str | None = None  # default: the database_url (or the SQLite database under home)


class McpUpstreamSettings(_Section):
    """An MCP server whose tools the MCP gateway serves as ``NAME__TOOL``: a Streamable HTTP ``url``
    (``headers`` from ``secret:NAME``) or a stdio ``command`` (``env`` from secrets). The caller's token
    is never passed on: the upstream gets only these credentials."""

    name: str
    url: str | None = None
    headers: dict[str, str] = Field(default_factory=dict)
    command: list[str] | None = None
    env: dict[str, str] = Field(default_factory=dict)
    #: the server's tools the gateway serves (all of them when absent)
    tools: list[str] | None = None
    #: seconds one call may take
    timeout: Annotated[float, Field(gt=0, le=3600)] = 30.0


class McpPolicySettings(_Section):
    """Who may call which gateway tools, and with which arguments. A rule applies to a principal named in
    ``principals`` (ids), holding one of ``roles`` or of one of ``teams`` (to everyone when all three are
    empty); it allows the tools matching ``tools`` (glob patterns over the gateway's names, e.g.
    ``docs__*``), each string argument named in ``arguments`` restricted to the given path prefixes."""

    principals: list[str] = Field(default_factory=list)
    roles: list[str] = Field(default_factory=list)
    teams: list[str] = Field(default_factory=list)
    tools: list[str] = Field(min_length=1)
    arguments: dict[str, list[str]] = Field(default_factory=dict)


class McpGatewaySettings(_Section):
    """The MCP gateway at ``/mcp`` of ``shopfloor serve`` (``[mcp]``): registered agents as ``agent__NAME``
    tools, signed skills as ``skill__NAME``, upstream servers' tools as ``SERVER__TOOL``, per-identity
    policies, OAuth resource metadata."""

    agents: bool = True  # serve the registered agents as tools
    #: serve the skill registry's signed skills as ``skill__NAME`` (newest version of each)
    skills: bool = True
    #: the sandbox a skill called through the gateway runs in: the keys of an agent spec's ``sandbox:``
    #: (``isolation``, ``network``, ``memory``, ``cpus``, ``pids``, ``timeout``, ``disk``); unset keys
    #: take an agent's defaults
    skill_sandbox: dict[str, Any] = Field(default_factory=dict)
    upstreams: list[McpUpstreamSettings] = Field(default_factory=list)
    #: seconds an upstream's tool list is reused before it is asked again
    list_ttl: Annotated[float, Field(ge=0)] = 60.0
    #: seconds an agent call may run before the tool call fails (the run itself goes on)
    agent_timeout: Annotated[float, Field(gt=0)] = 600.0
    #: when any rule is given, a tool no rule allows a principal is hidden from it and refused
    policies: list[McpPolicySettings] = Field(default_factory=list)
    #: the canonical URL of this resource server (RFC 9728 ``resource``; default: the request's
    #: ``http(s)://host/mcp``); with OIDC, tokens must carry ``[server.oidc] audience``
    resource: str | None = None
    #: authorisation servers named in the metadata (default: ``[server.oidc] issuer``)
    authorization_servers: list[str] = Field(default_factory=list)
    #: the host names a request's ``Host`` may carry (DNS rebinding); default: with ``[server] host`` on
    #: loopback, the loopback names and ``resource``'s host, else any host
    allowed_hosts: list[str] = Field(default_factory=list)


JwtAlgorithm = Literal["RS256", "ES256", "EdDSA"]
_JWT_ALGORITHMS: tuple[JwtAlgorithm, ...] = ("RS256", "ES256", "EdDSA")


class OIDCSettings(_Section):
    """Bearer JWTs of an OpenID Connect provider (``[server.oidc]``); off while ``jwks_url`` is unset."""

    issuer: str | None = None
    audience: str | None = None
    jwks_url: str | None = None
    #: asymmetric algorithms only: an HS* token "signed" with a public key, or ``none``, is refused
    algorithms: list[JwtAlgorithm] = Field(default_factory=lambda: list(_JWT_ALGORITHMS))
    leeway: float = Field(30.0, ge=0, le=300, description="clock skew allowed on exp/nbf/iat, seconds")
    #: an unknown ``kid`` refetches the JWKS at most this often (a flood of made-up kids costs nothing)
    jwks_min_refresh: float = Field(30.0, ge=0)
    jwks_timeout: float = Field(5.0, gt=0)
    #: the claim holding the principal's roles and team, if the provider sends them
    roles_claim: str = "roles"
    team_claim: str = "team"


class ConsoleSettings(_Section):
    """The web console ``shopfloor serve`` answers at ``/`` (``[server.console]``)."""

    enabled: bool = True
    #: a signed-in session ends this long after sign-in (and at once when its API key is revoked)
    session_seconds: float = Field(8 * 3600.0, ge=60, le=7 * 86400)
    #: the live runs list and run page ask for fresh rows this often (seconds)
    refresh_seconds: float = Field(2.0, ge=0.5, le=60)
    #: mark the session cookie ``Secure`` on every answer, not only over https (behind a TLS proxy)
    secure_cookies: bool = False


class ServerSettings(_Section):
    """``shopfloor serve`` (``[server]``)."""

    host: str = "127.0.0.1"
    port: int = Field(8080, ge=0, le=65535)
    workers: int = Field(1, ge=1, le=64)
    max_body_bytes: int = Field(1_048_576, ge=1024, description="request bodies larger than this get a 413")
    #: a verified credential is trusted from memory this long: revoking a key takes effect within it
    auth_cache_seconds: float = Field(5.0, ge=0, le=300)
    #: seconds between checks of the GitOps policy file (``$SHOPFLOOR_HOME/gitops/policy.json``): a
    #: change is validated and served without a restart (0: read only at start)
    policy_poll_seconds: float = Field(2.0, ge=0, le=3600)
    oidc: OIDCSettings = Field(default_factory=OIDCSettings)  # type: ignore[arg-type]
    console: ConsoleSettings = Field(default_factory=ConsoleSettings)  # type: ignore[arg-type]


class ClientSettings(_Section):
    """The command line against a server (``SHOPFLOOR_URL``, ``SHOPFLOOR_API_KEY``); unset: local mode."""

    url: str | None = None
    api_key: str | None = Field(None, repr=False)
    timeout: float = Field(30.0, gt=0)


class GitOpsSettings(_Section):
    """``shopfloor gitops``: the policy on what may be applied."""

    #: apply only commits SSH-signed by a key of this file (git's allowed-signers format); none: any commit
    allowed_signers: Path | None = None


class ReleaseSettings(_Section):
    """Canary promotion and automatic rollback (``shopfloor deployments evaluate``): the candidate's runs
    are compared with the stable release's since the canary started."""

    window: float = Field(3600.0, gt=0, description="seconds a candidate must hold before it is promoted")
    min_runs: int = Field(20, ge=1, description="runs of the candidate before it is judged")
    #: how much worse than stable the candidate may be before it is rolled back (absolute rates)
    max_completion_drop: float = Field(0.05, ge=0, le=1)
    max_fault_increase: float = Field(0.05, ge=0, le=1)
    max_timeout_increase: float = Field(0.05, ge=0, le=1)
    #: candidate p50 latency over stable's
    max_latency_ratio: float = Field(1.5, gt=0)
    #: mean feedback rating (-1..1) drop
    max_feedback_drop: float = Field(0.2, ge=0, le=2)
    #: the model grading sampled answers of both releases (judged quality; None: not judged)
    judge_model: str | None = None
    judge_rubric: str = Field(
        "5 if the answer does the task correctly and completely, 1 if it is wrong or missing.", min_length=1
    )
    #: the share of each release's completed runs judged, and at least ``min_judged`` of them
    judge_sample: float = Field(0.2, gt=0, le=1)
    #: judged runs each release needs before quality is compared and before a candidate is promoted
    min_judged: int = Field(3, ge=1)
    #: judge calls per release in one evaluation at most (the rest wait for the next)
    judge_max_per_round: int = Field(20, ge=1)
    #: mean judged score (0..1) drop
    max_quality_drop: float = Field(0.1, ge=0, le=1)
    #: seconds between a server's own evaluations of every canary (0: only `deployments evaluate`)
    evaluate_every: float = Field(0.0, ge=0)


class EvalSettings(_Section):
    #: the folder holding the ``bfcl_eval`` package (its data and AST checker), installed there without
    #: its dependencies; default: ``<venv>/share/shopfloor/bfcl-eval``, where ``scripts/bootstrap.sh`` puts it
    bfcl_path: Path | None = None
    #: how long an item's result may wait to be written with others' (one transaction for them all);
    #: 0 writes each at once. One lost to a crash costs no run: resuming scores the item's ended run again
    write_every: float = Field(1.0, ge=0, description="seconds an item's result may wait to be written")
    #: results that are written at once, however soon
    write_batch: int = Field(64, ge=1, description="results written together at most")


class DocsSettings(_Section):
    #: where document collections live: unset, one SQLite file per collection under
    #: ``$SHOPFLOOR_HOME/docs`` (``file:///DIR`` names another folder); ``postgresql://...``, tables
    #: there (full text in ``tsvector`` columns), shared by every machine that names the same database
    url: str | None = None


class Settings(_Section):
    home: Path
    database_url: str | None = None  # default: sqlite under home
    openai: OpenAISettings = Field(default_factory=OpenAISettings)
    models: ModelSettings = Field(default_factory=ModelSettings)  # type: ignore[arg-type]
    workspace: WorkspaceSettings = Field(default_factory=WorkspaceSettings)
    sandbox: SandboxSettings = Field(default_factory=SandboxSettings)
    trust: TrustSettings = Field(default_factory=TrustSettings)
    telemetry: TelemetrySettings = Field(default_factory=TelemetrySettings)
    runtime: RuntimeSettings = Field(default_factory=RuntimeSettings)  # type: ignore[arg-type]
    security: SecuritySettings = Field(default_factory=SecuritySettings)
    gateway: GatewaySettings = Field(default_factory=GatewaySettings)
    server: ServerSettings = Field(default_factory=ServerSettings)  # type: ignore[arg-type]
    client: ClientSettings = Field(default_factory=ClientSettings)  # type: ignore[arg-type]
    releases: ReleaseSettings = Field(default_factory=ReleaseSettings)  # type: ignore[arg-type]
    gitops: GitOpsSettings = Field(default_factory=GitOpsSettings)
    mcp: McpGatewaySettings = Field(default_factory=McpGatewaySettings)
    evals: EvalSettings = Field(default_factory=EvalSettings)  # type: ignore[arg-type]
    docs: DocsSettings = Field(default_factory=DocsSettings)

    @property
    def db_url(self) -> str:
        return self.database_url or f"sqlite:///{self.home / 'shopfloor.db'}"

    @property
    def models_dir(self) -> Path:
        return self.home / "models"

    @property
    def prompt_cache_dir(self) -> Path:
        return self.home / "cache" / "prompt-states"

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
    "SHOPFLOOR_URL": ("client", "url"),
    "SHOPFLOOR_API_KEY": ("client", "api_key"),
}


def _set(data: dict[str, Any], path: tuple[str, ...], value: str) -> None:
    node = data
    for key in path[:-1]:
        node = node.setdefault(key, {})
        if not isinstance(node, dict):
            raise ConfigError(f"environment override {'.'.join(path)}: {key} is not a section")
    node[path[-1]] = value


#: the roles, bindings, limits, gateway routes and aliases a GitOps repository declares (``ops/gitops``
#: writes it whole, atomically), relative to the home; merged into every process's settings
GITOPS_POLICY = Path("gitops") / "policy.json"
#: what that file may hold: (its key, where it goes in the settings, a mapping (by name) or a list)
POLICY_SECTIONS: tuple[tuple[str, tuple[str, str], bool], ...] = (
    ("roles", ("security", "roles"), True),
    ("bindings", ("security", "bindings"), False),
    ("limits", ("security", "limits"), False),
    ("routes", ("gateway", "routes"), True),
    ("aliases", ("gateway", "aliases"), True),
)


def read_policy(path: Path) -> dict[str, Any]:
    """The GitOps policy file at ``path`` ({} when there is none)."""
    if not path.is_file():
        return {}
    try:
        policy = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise ConfigError(f"{path}: unreadable ({exc}); run `shopfloor gitops sync` again") from exc
    if not isinstance(policy, dict):
        raise ConfigError(f"{path}: expected a JSON object; run `shopfloor gitops sync` again")
    return policy


def _merge_policy(data: dict[str, Any], policy: Mapping[str, Any], path: Path, config_file: Path) -> None:
    """Add the GitOps policy to the settings read from ``config_file``: lists are appended, a name the
    two both define is refused (which one should win is the operator's decision, not ours)."""
    for key, (section, name), by_name in POLICY_SECTIONS:
        value = policy.get(key)
        if not value:
            continue
        target = data.setdefault(section, {})
        if not isinstance(target, dict):
            raise ConfigError(f"{config_file}: [{section}] must be a table")
        current = target.setdefault(name, {} if by_name else [])
        value = json.loads(json.dumps(value))  # a copy: the settings never alias the caller's data
        if by_name and isinstance(current, dict) and isinstance(value, dict):
            both = sorted(set(current) & set(value))
            if both:
                raise ConfigError(
                    f"{section}.{name} {', '.join(both)}: defined in {config_file} and by GitOps ({path}); "
                    "remove one"
                )
            current.update(value)
        elif not by_name and isinstance(current, list) and isinstance(value, list):
            current.extend(value)
        else:
            raise ConfigError(f"{path}: {key} has the wrong shape; run `shopfloor gitops sync` again")


def load_settings(
    env: Mapping[str, str] | None = None, *, policy: Mapping[str, Any] | None = None
) -> Settings:
    """Build the settings from defaults, the config file, the GitOps policy (``policy``: this one instead
    of the file's, to check it before it is written) and ``env`` (default: os.environ)."""
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
    policy_file = home / GITOPS_POLICY
    _merge_policy(data, read_policy(policy_file) if policy is None else policy, policy_file, config_file)
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
