"""The ``connectors:`` section of ``agent.yaml``: MCP servers (stdio or Streamable HTTP) and SQL databases.

A value written ``secret:NAME`` (in an MCP server's ``env`` or ``headers``, or in a SQL URL) is a
reference, resolved when the connector connects; the spec, and so the agent's digest, holds only the
reference, never the secret.
"""

from __future__ import annotations

import re
from typing import Literal, Self
from urllib.parse import urlsplit

from pydantic import Field, field_validator, model_validator

from shopfloor.spec._fields import Int, Number, StrictModel

__all__ = [
    "SECRET_PREFIX",
    "WORKSPACE_REF",
    "A2AAgentSpec",
    "CollectionSpec",
    "ConnectorSpec",
    "DocsConnectorSpec",
    "McpServerSpec",
    "ResearchModelsSpec",
    "ResearchSpec",
    "SqlConnectorSpec",
]

#: ``WS[@REF]``: a workspace's name as workspaces spell it, then a ref (a branch, or a commit with ``~N``)
WORKSPACE_REF = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}(@[A-Za-z0-9][A-Za-z0-9._~-]{0,127})?$"

#: the prefix of a value that names a secret instead of holding one
SECRET_PREFIX = "secret:"
_CONNECTOR_NAME = re.compile(r"^[a-z][a-z0-9_-]{0,30}\Z")
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,127}\Z")
_HEADER_NAME = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]{1,128}\Z")
_SECRET_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,128}\Z")
_SQL_SCHEMES = ("postgresql", "postgres", "sqlite")


def _check_headers(value: dict[str, str]) -> dict[str, str]:
    for name, item in value.items():
        if not _HEADER_NAME.match(name):
            raise ValueError(f"{name!r} is not an HTTP header name")
        if "\r" in item or "\n" in item:
            raise ValueError(f"the value of header {name!r} may not contain a line break")
        _check_secret(item)
    return value


def _check_http_url(value: str) -> str:
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"expected an http:// or https:// URL, got {value!r}")
    return value


def _check_secret(value: str) -> str:
    if value.startswith(SECRET_PREFIX) and not _SECRET_NAME.match(value.removeprefix(SECRET_PREFIX)):
        raise ValueError(f"expected secret:NAME with NAME of letters, digits, '_', '.' or '-', got {value!r}")
    return value


class McpServerSpec(StrictModel):
    """An MCP server: a command run over stdio, or a Streamable HTTP URL; exactly one of the two."""

    command: list[str] | None = Field(None, min_length=1, description="argv of a stdio server")
    env: dict[str, str] = Field(default_factory=dict, description="environment of a stdio server")
    url: str | None = Field(None, description="http(s) URL of a Streamable HTTP server")
    headers: dict[str, str] = Field(default_factory=dict, description="HTTP headers (e.g. Authorization)")

    @field_validator("command")
    @classmethod
    def _command(cls, value: list[str] | None) -> list[str] | None:
        if value is not None and any(not part or "\0" in part for part in value):
            raise ValueError("each part of the command must be a non-empty string without NUL bytes")
        return value

    @field_validator("env")
    @classmethod
    def _env(cls, value: dict[str, str]) -> dict[str, str]:
        for name, item in value.items():
            if not _ENV_NAME.match(name):
                raise ValueError(f"{name!r} is not an environment variable name")
            _check_secret(item)
        return value

    @field_validator("headers")
    @classmethod
    def _headers(cls, value: dict[str, str]) -> dict[str, str]:
        return _check_headers(value)

    @field_validator("url")
    @classmethod
    def _url(cls, value: str | None) -> str | None:
        return None if value is None else _check_http_url(value)

    @model_validator(mode="after")
    def _one_transport(self) -> Self:
        if (self.command is None) == (self.url is None):
            raise ValueError(
                "give either command (a stdio server) or url (Streamable HTTP), not both or none"
            )
        if self.url is not None and self.env:
            raise ValueError("env is for a stdio server (command); an HTTP server takes headers")
        if self.command is not None and self.headers:
            raise ValueError("headers are for an HTTP server (url); a stdio server takes env")
        return self


class A2AAgentSpec(StrictModel):
    """A remote A2A agent called as a tool: its base URL (the card is at ``URL/.well-known/agent-card.json``)
    and HTTP headers (e.g. ``Authorization: secret:NAME``)."""

    url: str = Field(description="the agent's base URL, e.g. http://127.0.0.1:8080/a2a/researcher")
    headers: dict[str, str] = Field(default_factory=dict, description="HTTP headers (e.g. Authorization)")

    @field_validator("headers")
    @classmethod
    def _headers(cls, value: dict[str, str]) -> dict[str, str]:
        return _check_headers(value)

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        return _check_http_url(value)


class SqlConnectorSpec(StrictModel):
    """A database queried read-only: ``postgresql://...`` or ``sqlite:///PATH``."""

    url: str = Field(description="postgresql://USER@HOST:PORT/DB, sqlite:///PATH, or secret:NAME")
    row_limit: Int = Field(200, ge=1, le=10_000, description="rows one query may return")
    statement_timeout: Number = Field(10.0, gt=0, le=600, description="seconds one query may run")
    sample_rows: Int = Field(3, ge=0, le=20, description="rows per table shown by schema discovery")

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        if value.startswith(SECRET_PREFIX):
            return _check_secret(value)
        scheme = value.partition("://")[0].split("+")[0]
        if scheme not in _SQL_SCHEMES:
            raise ValueError(f"expected a postgresql:// or sqlite:/// URL (or secret:NAME), got {value!r}")
        return value


_MODEL_REF = re.compile(r"^[a-z][a-z0-9_-]{0,30}(:[^\s]{1,200})?\Z")
_KEYWORD = re.compile(r"^[^\s].{0,62}\Z")


class ResearchModelsSpec(StrictModel):
    """The model routes of the research tool: ``easy`` answers direct and shallow questions, ``hard``
    deep ones; a reference (``local:qwen2.5-coder-1.5b``), or none for the run's own model."""

    easy: str | None = None
    hard: str | None = None

    @field_validator("easy", "hard")
    @classmethod
    def _reference(cls, value: str | None) -> str | None:
        if value is not None and not _MODEL_REF.match(value):
            raise ValueError(
                f"expected a model reference PROVIDER:NAME (local:qwen2.5-coder-1.5b), got {value!r}"
            )
        return value


class CollectionSpec(StrictModel):
    """A further collection the connector searches (added with ``shopfloor docs add``); the router picks
    the collections a question is about by their description and keywords."""

    collection: str = Field(pattern=r"^[a-z][a-z0-9_-]{0,62}$", description="the collection's name")
    description: str = Field("", max_length=500)
    keywords: list[str] = Field(default_factory=list, max_length=64)

    @field_validator("keywords")
    @classmethod
    def _keywords(cls, value: list[str]) -> list[str]:
        for word in value:
            if not _KEYWORD.match(word):
                raise ValueError(f"a keyword is 1-63 characters, not starting with a space: got {word!r}")
        return value


class ResearchSpec(StrictModel):
    """How the collection's ``research`` tool researches a question (route, plan, write, verify)."""

    #: ``auto``: the router decides per question; ``shallow`` or ``deep`` always
    depth: Literal["auto", "shallow", "deep"] = "auto"
    #: how the router decides: ``rules`` alone; ``model``: the classifier (the ``easy`` model under a
    #: schema) decides every question; ``auto``: rules first, the classifier what they leave open
    router: Literal["rules", "model", "auto"] = "rules"
    #: a question that needs no documents (a greeting, arithmetic) is answered without retrieval
    direct: bool = True
    models: ResearchModelsSpec = Field(default_factory=ResearchModelsSpec)
    #: tokens a deep pass is expected to spend (none: estimated from ``sub_questions`` and ``passages``);
    #: a question routed deep with fewer tokens left in the run is researched shallow, and says so
    deep_tokens: Int | None = Field(None, ge=100, le=10_000_000)
    #: seconds a deep pass is expected to take; with fewer left in the run (or its step), shallow
    deep_seconds: Number = Field(120.0, gt=0, le=86_400)
    passages: Int = Field(6, ge=1, le=12, description="passages a shallow answer is written from at most")
    sub_questions: Int = Field(3, ge=1, le=8, description="sub-questions a deep plan has at most")
    #: how a deep plan's researchers run (in a durable run each is a child run of its own): side by side,
    #: or one after the other (a model server that serves one request at a time gains nothing from
    #: several at once, and a sub-question researched before the next can be looked at sooner)
    researchers: Literal["parallel", "sequential"] = "parallel"
    sentences: Int = Field(4, ge=1, le=10, description="sentences the answer has at most")
    #: the run's model judges the sentences the lexical and embedding checks leave undecided
    judge: bool = False
    #: a deep question's plan (its sub-questions) waits for a person's approval (``shopfloor runs
    #: approve``, the console) before it is researched; rejected, the run ends (stop reason ``rejected``);
    #: a shallow answer left without support is then not researched deep on its own
    approve_plan: bool = False
    #: where in the workspace the report goes as Markdown (none: not written)
    report_dir: str | None = Field("reports", pattern=r"^[A-Za-z0-9_][A-Za-z0-9_./-]{0,120}$")

    @model_validator(mode="after")
    def _router_needs_auto(self) -> Self:
        if self.router != "rules" and self.depth != "auto":
            raise ValueError(
                f"router {self.router!r} is never asked with depth {self.depth!r}: set depth: auto, "
                "or router: rules"
            )
        return self


class DocsConnectorSpec(StrictModel):
    """A document collection (``shopfloor docs add COLLECTION PATH``) searched by a ``retrieve`` tool and
    researched by a ``research`` tool (grounded answers with verified citations)."""

    collection: str = Field(pattern=r"^[a-z][a-z0-9_-]{0,62}$", description="the collection's name")
    k: Int = Field(5, ge=1, le=50, description="passages a search returns by default")
    mode: Literal["hybrid", "bm25", "dense"] = Field("hybrid", description="how passages are ranked")
    research: ResearchSpec = Field(default_factory=ResearchSpec)  # type: ignore[arg-type]
    #: files or directories (relative to the spec, or ``pkg:PACKAGE/PATH``) ingested into the collection
    #: as a run starts; unchanged documents cost a hash, a broken one is reported and skipped; with
    #: ``workspace``, paths inside that workspace (all of it when none)
    sources: list[str] = Field(default_factory=list, max_length=64)
    #: ``WS[@REF]``: the collection is built from workspace WS at REF (a branch or commit; ``main`` when
    #: not given) as a run starts, not from host files; its index is versioned with the commit
    workspace: str | None = Field(None, pattern=WORKSPACE_REF)
    #: ingested instead of ``sources`` when none of them exists (documentation a system package
    #: installs, with a small shipped copy for where it is not installed); same form as ``sources``
    fallback: list[str] = Field(default_factory=list, max_length=64)
    #: files of a source directory not ingested: ``fnmatch`` patterns (``*`` crosses ``/``) matched
    #: against the path under the directory, or against the file name for a pattern without ``/``
    exclude: list[str] = Field(default_factory=list, max_length=256)
    #: what the collection holds, for the router's choice among ``collections``
    description: str = Field("", max_length=500)
    keywords: list[str] = Field(default_factory=list, max_length=64)
    #: further collections the connector searches; the router chooses among them per question
    collections: list[CollectionSpec] = Field(default_factory=list, max_length=16)

    @field_validator("exclude")
    @classmethod
    def _exclude(cls, value: list[str]) -> list[str]:
        for pattern in value:
            if not pattern.strip() or len(pattern) > 200 or pattern.startswith("/"):
                raise ValueError(
                    f"exclude pattern {pattern[:80]!r}: a non-empty path pattern relative to a source "
                    "directory, at most 200 characters (e.g. 'genindex*.html', '_sources/*')"
                )
        return value

    @model_validator(mode="after")
    def _fallback_needs_sources(self) -> Self:
        if self.fallback and not self.sources:
            raise ValueError("fallback is ingested when no entry of sources exists: give sources too")
        return self

    @model_validator(mode="after")
    def _workspace_paths(self) -> Self:
        if self.workspace is None:
            return self
        if self.fallback:
            raise ValueError("a collection built from a workspace has no fallback: leave fallback out")
        for path in self.sources:
            if path.startswith("/") or "\x00" in path or ".." in path.split("/") or path.startswith("pkg:"):
                raise ValueError(
                    f"source {path[:80]!r}: with workspace, sources are paths inside it, relative to its "
                    "root, without '..' (e.g. 'docs/guide')"
                )
        return self

    @model_validator(mode="after")
    def _distinct_collections(self) -> Self:
        seen = {self.collection}
        for entry in self.collections:
            if entry.collection in seen:
                raise ValueError(f"collection {entry.collection!r} is named twice: each is searched once")
            seen.add(entry.collection)
        CollectionSpec._keywords(self.keywords)
        return self


class ConnectorSpec(StrictModel):
    """One data source of the agent; its tools are named ``NAME__TOOL``."""

    name: str
    mcp: McpServerSpec | None = None
    sql: SqlConnectorSpec | None = None
    docs: DocsConnectorSpec | None = None
    a2a: A2AAgentSpec | None = None
    #: the tools of the server the agent may use (all of them when absent)
    tools: list[str] | None = None
    #: seconds one call may take before it fails with a tool error
    timeout: Number = Field(30.0, gt=0, le=3600)

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not _CONNECTOR_NAME.match(value):
            raise ValueError("expected 1-31 lowercase letters, digits, '_' or '-', starting with a letter")
        return value

    @model_validator(mode="after")
    def _one_kind(self) -> Self:
        if sum(kind is not None for kind in (self.mcp, self.sql, self.docs, self.a2a)) != 1:
            raise ValueError(
                "give exactly one of mcp (an MCP server), sql (a database), docs (a document collection) "
                "or a2a (a remote agent)"
            )
        return self
