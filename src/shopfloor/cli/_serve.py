"""``shopfloor serve`` and ``shopfloor keys``: the HTTP control plane and the API keys it accepts.

With ``SHOPFLOOR_URL`` (and ``SHOPFLOOR_API_KEY``) set, ``keys`` manages that server's keys through
``/v1/keys`` and prints what it prints locally; the server audits each change as the caller's key.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Annotated, Any, Literal
from urllib.parse import quote

import typer
from rich.table import Table
from rich.text import Text

from shopfloor.cli._app import app, console, err_console, get_settings, print_json
from shopfloor.cli._untrusted import untrusted
from shopfloor.config import ClientSettings

if TYPE_CHECKING:
    from shopfloor.security import ApiKey, KeyStore

__all__ = ["keys_app"]

keys_app = typer.Typer(
    help="API keys of `shopfloor serve`: create (shown once), list, show, revoke; through SHOPFLOOR_URL "
    "on that server.",
    no_args_is_help=True,
)
app.add_typer(keys_app, name="keys")

JsonOpt = Annotated[bool, typer.Option("--json", help="print JSON for scripts")]


@app.command("serve")
def serve_cmd(
    host: Annotated[
        str | None, typer.Option(help="address to listen on (default [server] host: 127.0.0.1)")
    ] = None,
    port: Annotated[int | None, typer.Option(help="port (default [server] port: 8080)")] = None,
    workers: Annotated[
        int | None, typer.Option(help="worker processes, each serving the API and executing runs")
    ] = None,
) -> None:
    """Serve the control plane over HTTP (OpenAPI at /openapi.json); every route but the health
    probes and the document needs an API key (`shopfloor keys create`) or an OIDC token."""
    from shopfloor.gateway import serve

    settings = get_settings()
    server = settings.server
    serve(
        settings,
        host=host or server.host,
        port=server.port if port is None else port,
        workers=workers or server.workers,
    )


def _server() -> ClientSettings | None:
    """The server whose keys these commands manage: SHOPFLOOR_URL's, else the local key table."""
    client = get_settings().client
    return client if client.url else None


def _keys() -> KeyStore:
    from shopfloor.security import KeyStore

    settings = get_settings()
    settings.ensure_home()
    return KeyStore.open(settings.db_url)


def _remote(server: ClientSettings, method: str, path: str, body: Any = None) -> Any:
    from shopfloor.cli._remote import remote_call

    return remote_call(server, method, path, json_body=body).json()


def _key(data: dict[str, Any]) -> ApiKey:
    """The key of a server's answer, as the local store gives it (so both print the same)."""
    from shopfloor.security import ApiKey

    return ApiKey(**{name: data[name] for name in ApiKey.__dataclass_fields__})


def _audit_key(action: Literal["created", "revoked"], key: ApiKey) -> None:
    """Append the key's creation or revocation to the audit log, as the local administrator."""
    from shopfloor.security import LOCAL_ADMIN, audit_key, build_audit_log

    with build_audit_log(get_settings()) as audit:
        roles = (key.role,) if key.role else ()
        audit_key(
            audit, action, actor=LOCAL_ADMIN, key_id=key.key_id, name=key.name, roles=roles, team=key.team
        )


def _when(ts: float | None) -> str:
    return "-" if ts is None else datetime.fromtimestamp(ts).strftime("%Y-%m-%d %H:%M")


def _table(keys: list[ApiKey]) -> Table:
    table = Table("id", "name", "role", "team", "state", "created", "expires")
    for key in keys:
        data = key.to_dict()
        table.add_row(
            key.key_id,
            untrusted(key.name),
            untrusted(key.role or "-"),
            untrusted(key.team or "-"),
            data["state"],
            _when(key.created_at),
            _when(key.expires_at),
        )
    return table


@keys_app.command("create")
def create_cmd(
    name: Annotated[str, typer.Option("--name", help="who or what the key is for")],
    role: Annotated[str | None, typer.Option("--role", help="the role the key acts with")] = None,
    team: Annotated[str | None, typer.Option("--team", help="the team the key belongs to")] = None,
    expires: Annotated[
        str | None, typer.Option("--expires", help="lifetime, e.g. 30d, 12h, 2w (default: never)")
    ] = None,
    json_out: JsonOpt = False,
) -> None:
    """Create an API key; the key is printed once and only its hash is kept. Through a server
    (SHOPFLOOR_URL), the caller's key may grant no role or team beyond its own."""
    from shopfloor.security import LOCAL_ADMIN, build_authorizer, parse_duration

    expires_in = parse_duration(expires) if expires else None
    server = _server()
    if server is not None:
        body = {"name": name, "role": role, "team": team, "expires_in": expires_in}
        data = _remote(server, "POST", "/v1/keys", body)
        key, plaintext = _key(data), str(data["key"])
    else:
        if role is not None:
            build_authorizer(get_settings()).check_role(role)
        store = _keys()
        try:
            key, plaintext = store.create(
                name, role=role, team=team, expires_in=expires_in, created_by=LOCAL_ADMIN.id
            )
        finally:
            store.close()
        _audit_key("created", key)
    if json_out:
        print_json({**key.to_dict(), "key": plaintext})
        return
    console.print(Text.assemble("created key ", (key.key_id, "bold"), " for ", untrusted(key.name)))
    console.print(plaintext, soft_wrap=True)
    err_console.print("[yellow]store it now: it is not shown again[/]")


@keys_app.command("ls")
def ls_cmd(json_out: JsonOpt = False) -> None:
    """List the API keys (never their secrets); through a server, those of the caller's team."""
    server = _server()
    if server is not None:
        keys = [_key(data) for data in _remote(server, "GET", "/v1/keys")]
    else:
        store = _keys()
        try:
            keys = store.list_keys()
        finally:
            store.close()
    if json_out:
        print_json([key.to_dict() for key in keys])
        return
    console.print(_table(keys))


@keys_app.command("show")
def show_cmd(
    key_id: Annotated[str, typer.Argument(help="the key's id (or the key itself)")], json_out: JsonOpt = False
) -> None:
    """Show one API key (never its secret)."""
    from shopfloor.security import key_id_of

    server = _server()
    if server is not None:
        key = _key(_remote(server, "GET", f"/v1/keys/{quote(key_id_of(key_id), safe='')}"))
    else:
        store = _keys()
        try:
            key = store.get(key_id)
        finally:
            store.close()
    if json_out:
        print_json(key.to_dict())
    else:
        console.print(_table([key]))


@keys_app.command("revoke")
def revoke_cmd(
    key_id: Annotated[str, typer.Argument(help="the key's id (or the key itself)")], json_out: JsonOpt = False
) -> None:
    """Revoke a key: servers refuse it within [server] auth_cache_seconds (5 s by default), the one
    that revoked it (through SHOPFLOOR_URL) at once."""
    from shopfloor.security import key_id_of

    server = _server()
    if server is not None:
        # only the id travels: a whole key given here never reaches the server's URL or logs
        path = f"/v1/keys/{quote(key_id_of(key_id), safe='')}/revoke"
        key = _key(_remote(server, "POST", path))
    else:
        store = _keys()
        try:
            key = store.revoke(key_id)
        finally:
            store.close()
        _audit_key("revoked", key)
    if json_out:
        print_json(key.to_dict())
    else:
        console.print(f"revoked key [bold]{key.key_id}[/]")
