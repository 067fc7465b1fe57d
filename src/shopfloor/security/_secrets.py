"""Secrets: encrypted at rest with AES-256-GCM, the key from a ``KeyProvider`` (a file, an environment
variable, or an external key service behind the same interface).

Each value is sealed with a fresh 96-bit nonce and the secret's name and version as associated data, so a
ciphertext moved to another name or version does not decrypt. Values are read only through ``reveal``
(each read is audited) or a ``secret:NAME`` reference resolved at call time; listing shows names and
versions, never values.
"""

from __future__ import annotations

import base64
import os
import re
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import sqlalchemy as sa
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from shopfloor._registry import Registry
from shopfloor.config import Settings
from shopfloor.errors import SecretError
from shopfloor.security._audit import AuditLog, build_audit_log
from shopfloor.storage import create_tables, make_engine

__all__ = [
    "SECRET_PREFIX",
    "EnvKeyProvider",
    "FileKeyProvider",
    "KeyProvider",
    "KeyProviderFactory",
    "SecretInfo",
    "SecretStore",
    "build_secret_store",
    "key_providers",
    "resolve_setting",
]

SECRET_PREFIX = "secret:"
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]{0,127}\Z")
#: the most a secret may hold
MAX_BYTES = 64 * 1024

_meta = sa.MetaData()
secrets_table = sa.Table(
    "secrets",
    _meta,
    sa.Column("name", sa.String(128), primary_key=True),
    sa.Column("version", sa.Integer, nullable=False),
    sa.Column("nonce", sa.LargeBinary, nullable=False),
    sa.Column("ciphertext", sa.LargeBinary, nullable=False),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("updated_at", sa.Float, nullable=False),
)


class KeyProvider(ABC):
    """Where the 256-bit data key comes from."""

    @abstractmethod
    def key(self) -> bytes:
        """The 32-byte key, or ``SecretError`` saying what is missing."""


def _decode_key(text: str, where: str) -> bytes:
    try:
        raw = base64.b64decode(text.strip(), validate=True)
    except ValueError:
        raw = b""
    if len(raw) != 32:
        raise SecretError(f"{where}: expected a base64-encoded 32-byte key (e.g. `openssl rand -base64 32`)")
    return raw


class FileKeyProvider(KeyProvider):
    """The key in a file (base64); created with mode 0600 on first use when ``create``."""

    def __init__(self, path: Path, *, create: bool = True) -> None:
        self.path = path
        self.create = create

    def key(self) -> bytes:
        if not self.path.exists():
            if not self.create:
                raise SecretError(f"no secrets key at {self.path}")
            self.path.parent.mkdir(parents=True, exist_ok=True)
            try:
                fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            except FileExistsError:
                pass  # another process made it first
            else:
                with os.fdopen(fd, "w") as out:
                    out.write(base64.b64encode(AESGCM.generate_key(bit_length=256)).decode() + "\n")
        return _decode_key(self.path.read_text(), str(self.path))


class EnvKeyProvider(KeyProvider):
    """The key in an environment variable (base64), read from the mapping given (the process's by default)."""

    def __init__(self, variable: str, env: Mapping[str, str] | None = None) -> None:
        self.variable = variable
        self.env = os.environ if env is None else env

    def key(self) -> bytes:
        value = self.env.get(self.variable)
        if not value:
            raise SecretError(f"the secrets key variable {self.variable} is not set")
        return _decode_key(value, f"${self.variable}")


#: makes a key provider from the settings and the environment
KeyProviderFactory = Callable[[Settings, Mapping[str, str] | None], KeyProvider]


def _file_provider(settings: Settings, env: Mapping[str, str] | None) -> KeyProvider:
    return FileKeyProvider(settings.security.secrets.key_file or settings.home / "secrets.key")


def _env_provider(settings: Settings, env: Mapping[str, str] | None) -> KeyProvider:
    return EnvKeyProvider(settings.security.secrets.key_env or "SHOPFLOOR_SECRETS_KEY", env)


def key_providers() -> Registry[KeyProviderFactory]:
    """Key providers by name (``[security.secrets] key_provider``); an external key service registers
    its factory here."""
    return Registry("secrets key provider", {"file": _file_provider, "env": _env_provider})


@dataclass(frozen=True, kw_only=True)
class SecretInfo:
    name: str
    version: int
    created_at: float
    updated_at: float


def check_name(name: str) -> str:
    if not _NAME.match(name):
        raise SecretError(
            f"bad secret name {name[:40]!r}: expected 1-128 letters, digits, '_', '.', '-', "
            "starting with a letter or '_'"
        )
    return name


class SecretStore:
    def __init__(self, engine: sa.Engine, keys: KeyProvider, *, audit: AuditLog | None = None) -> None:
        self.engine = engine
        self.keys = keys
        self.audit = audit
        create_tables(engine, _meta)

    @classmethod
    def open(cls, url: str, keys: KeyProvider, *, audit: AuditLog | None = None) -> SecretStore:
        return cls(make_engine(url), keys, audit=audit)

    def close(self) -> None:
        """Close the store's database (and its audit log's)."""
        self.engine.dispose()
        if self.audit is not None:
            self.audit.close()

    def __enter__(self) -> SecretStore:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _aead(self) -> AESGCM:
        return AESGCM(self.keys.key())

    def _audit(self, kind: str, name: str, actor: str, **details: object) -> None:
        if self.audit is not None:
            self.audit.append(kind, actor=actor, resource=f"secrets/{name}", details=details)

    def set(self, name: str, value: str, *, actor: str, must_exist: bool = False) -> SecretInfo:
        """Store ``value`` as the next version of ``name`` (``must_exist``: a rotation, not a creation)."""
        check_name(name)
        data = value.encode()
        if not data or len(data) > MAX_BYTES:
            raise SecretError(
                f"secret {name}: a value of 1 to {MAX_BYTES} bytes is expected, got {len(data)}"
            )
        aead, now = self._aead(), time.time()
        with self.engine.begin() as conn:
            row = conn.execute(
                sa.select(secrets_table.c.version, secrets_table.c.created_at).where(
                    secrets_table.c.name == name
                )
            ).first()
            if row is None and must_exist:
                raise SecretError(
                    f"no secret {name} to rotate (create it with `shopfloor secrets set {name}`)"
                )
            version = 1 if row is None else int(row.version) + 1
            nonce = os.urandom(12)
            sealed = aead.encrypt(nonce, data, f"{name}\0{version}".encode())
            values = {"version": version, "nonce": nonce, "ciphertext": sealed, "updated_at": now}
            if row is None:
                conn.execute(secrets_table.insert().values(name=name, created_at=now, **values))
            else:
                conn.execute(
                    secrets_table.update()
                    .where(secrets_table.c.name == name, secrets_table.c.version == row.version)
                    .values(**values)
                )
        self._audit("secret.rotated" if row else "secret.created", name, actor, version=version)
        return SecretInfo(
            name=name, version=version, created_at=now if row is None else row.created_at, updated_at=now
        )

    def reveal(self, name: str, *, actor: str) -> str:
        """The value of ``name`` (audited as a read by ``actor``)."""
        check_name(name)
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(secrets_table).where(secrets_table.c.name == name)).first()
        if row is None:
            raise SecretError(f"no secret named {name} (`shopfloor secrets ls` lists them)")
        try:
            value = (
                self._aead().decrypt(row.nonce, row.ciphertext, f"{name}\0{row.version}".encode()).decode()
            )
        except InvalidTag:
            raise SecretError(
                f"secret {name} does not decrypt with this key (wrong key, or its row was altered)"
            ) from None
        self._audit("secret.read", name, actor, version=int(row.version))
        return value

    def resolve(self, reference: str, *, actor: str) -> str:
        """The value a ``secret:NAME`` reference names (the gateway's upstream keys, tool environments)."""
        if not reference.startswith(SECRET_PREFIX):
            raise SecretError(f"{reference[:40]!r} is not a secret reference (expected secret:NAME)")
        return self.reveal(reference.removeprefix(SECRET_PREFIX), actor=actor)

    def ls(self) -> list[SecretInfo]:
        query = sa.select(
            secrets_table.c.name,
            secrets_table.c.version,
            secrets_table.c.created_at,
            secrets_table.c.updated_at,
        ).order_by(secrets_table.c.name)
        with self.engine.connect() as conn:
            return [
                SecretInfo(
                    name=r.name, version=int(r.version), created_at=r.created_at, updated_at=r.updated_at
                )
                for r in conn.execute(query)
            ]

    def rm(self, name: str, *, actor: str) -> None:
        check_name(name)
        with self.engine.begin() as conn:
            gone = conn.execute(secrets_table.delete().where(secrets_table.c.name == name)).rowcount
        if not gone:
            raise SecretError(f"no secret named {name}")
        self._audit("secret.deleted", name, actor)


def build_secret_store(
    settings: Settings,
    *,
    audit: AuditLog | None = None,
    env: Mapping[str, str] | None = None,
    providers: Registry[KeyProviderFactory] | None = None,
) -> SecretStore:
    """The secret store of ``settings``: in the main database, the key from the provider
    ``[security.secrets] key_provider`` names (``file``: ``key_file``, default
    ``$SHOPFLOOR_HOME/secrets.key``; ``env``: the variable ``key_env``, default ``SHOPFLOOR_SECRETS_KEY``)."""
    factory = (providers or key_providers()).get(settings.security.secrets.key_provider)
    settings.ensure_home()
    return SecretStore.open(settings.db_url, factory(settings, env), audit=audit)


def resolve_setting(settings: Settings, value: str | None, *, actor: str) -> str | None:
    """A configuration value as used: a ``secret:NAME`` reference read from the secret store (audited as
    ``actor``), anything else as it is. For upstream keys in ``config.toml`` (``api_key = "secret:NAME"``)."""
    if value is None or not value.startswith(SECRET_PREFIX):
        return value
    with build_secret_store(settings, audit=build_audit_log(settings)) as store:
        return store.resolve(value, actor=actor)
