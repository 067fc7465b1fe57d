"""Checks of the network services a cluster uses: PostgreSQL and Redis (1 s timeouts)."""

from __future__ import annotations

import re
import socket
from urllib.parse import urlsplit, urlunsplit

from shopfloor.config import Settings
from shopfloor.diagnostics._checks import CheckResult

__all__ = ["check_postgres", "check_redis", "ping_redis", "postgres_target"]

TIMEOUT = 1.0
DEFAULT_POSTGRES = "postgresql://postgres@127.0.0.1:5432/postgres"
DEFAULT_REDIS = ("127.0.0.1", 6379)


def postgres_target(settings: Settings) -> tuple[str, bool]:
    """The libpq URL to probe and whether it is the configured database (else the default address)."""
    url = settings.database_url or ""
    if url.startswith("postgres"):
        parts = urlsplit(url)
        # SQLAlchemy URLs carry a driver ("postgresql+psycopg://"); libpq does not want it.
        return urlunsplit(("postgresql", *parts[1:])), True
    return DEFAULT_POSTGRES, False


def _redact(url: str) -> str:
    return re.sub(r"//([^:/@]+):[^@]*@", r"//\1:***@", url)


def _connect(host: str, port: int) -> str | None:
    """None when something listens at host:port, else why not."""
    try:
        with socket.create_connection((host, port), timeout=TIMEOUT):
            return None
    except OSError as exc:
        return exc.strerror or type(exc).__name__


def check_postgres(settings: Settings) -> CheckResult:
    url, configured = postgres_target(settings)
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 5432
    shown = _redact(url)
    role = "the configured database" if configured else "the default address (SQLite is in use)"
    fix = (
        "start PostgreSQL or correct SHOPFLOOR_DATABASE_URL"
        if configured
        else "only for cluster mode: apt-get install postgresql, then set SHOPFLOOR_DATABASE_URL"
    )
    refused = _connect(host, port)
    data: dict[str, object] = {"url": shown, "configured": configured}
    if refused is not None:
        detail = f"nothing answers at {host}:{port} ({refused}); {role}"
        return CheckResult(name="postgresql", status="missing", detail=detail, fix=fix, data=data)
    try:
        import psycopg
    except ImportError:
        detail = f"port {host}:{port} open (psycopg not installed, login not tried)"
        return CheckResult(name="postgresql", status="ok", detail=detail, data=data)
    try:
        with psycopg.connect(url, connect_timeout=2) as conn:
            number = conn.info.server_version
    except psycopg.Error as exc:
        message = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        detail = f"{host}:{port} listens, but login failed: {message}"
        return CheckResult(
            name="postgresql",
            status="warn",
            detail=detail,
            fix="check user, password and database in the URL",
            data=data,
        )
    version = f"{number // 10000}.{number % 10000}"
    data["version"] = version
    return CheckResult(name="postgresql", status="ok", detail=f"PostgreSQL {version} at {shown}", data=data)


def _read_reply(sock: socket.socket) -> bytes:
    buffer = b""
    while b"\r\n" not in buffer:
        chunk = sock.recv(4096)
        if not chunk:
            break
        buffer += chunk
    if buffer.startswith(b"$"):
        header, _, rest = buffer.partition(b"\r\n")
        size = int(header[1:])
        while len(rest) < size + 2 and size >= 0:
            chunk = sock.recv(65536)
            if not chunk:
                break
            rest += chunk
        return rest[: max(size, 0)]
    return buffer.split(b"\r\n", 1)[0]


def ping_redis(host: str, port: int) -> tuple[str, str | None]:
    """Send PING (then INFO server); return the PING reply and the server version if given."""
    with socket.create_connection((host, port), timeout=TIMEOUT) as sock:
        sock.sendall(b"*1\r\n$4\r\nPING\r\n")
        reply = _read_reply(sock).decode(errors="replace")
        if reply != "+PONG":
            return reply, None
        sock.sendall(b"*2\r\n$4\r\nINFO\r\n$6\r\nserver\r\n")
        info = _read_reply(sock).decode(errors="replace")
    match = re.search(r"^redis_version:(\S+)", info, re.MULTILINE)
    return reply, match.group(1) if match else None


def check_redis(settings: Settings) -> CheckResult:
    host, port = DEFAULT_REDIS
    try:
        reply, version = ping_redis(host, port)
    except OSError as exc:
        return CheckResult(
            name="redis",
            status="missing",
            detail=f"nothing answers at {host}:{port} ({exc.strerror or type(exc).__name__})",
            fix="only for shared rate limits across gateways: apt-get install redis-server",
        )
    if reply != "+PONG":
        return CheckResult(
            name="redis",
            status="warn",
            detail=f"{host}:{port} answered PING with {reply[:60]!r}",
            fix="configure the Redis password or use an instance without AUTH",
        )
    shown = f"Redis {version}" if version else "Redis"
    return CheckResult(
        name="redis", status="ok", detail=f"{shown} at {host}:{port} answers PING", data={"version": version}
    )
