"""The console: ``shopfloor serve``'s web pages at ``/`` (a redirect) and ``/console/...``.

A sub-application the server hands the whole ``/console/`` tree to. Its pages are server-rendered
(Jinja2, autoescape) and read through the same runtime, stores and authoriser the control plane's API
uses. Sign-in takes an API key on a form and opens a server-side session (``SessionStore``); each page
asks its permission from ``CONSOLE_PERMISSIONS``; every POST carries the session's CSRF token. Every
answer carries a Content-Security-Policy that allows scripts and styles from ``/console/static`` only
(no inline script can run, whatever a model wrote), forbids framing, and ``nosniff``.
"""

# No `from __future__ import annotations`: FastAPI reads the pages' annotations (the `Session`
# dependency alias each page builder is given) when they are defined.

import asyncio
import hmac
import secrets
import urllib.parse
from collections.abc import MutableMapping
from dataclasses import dataclass
from importlib import resources
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from jinja2 import Environment
from starlette.exceptions import HTTPException as StarletteHTTPException

from shopfloor.config import ConsoleSettings
from shopfloor.errors import AuthenticationError, ShopfloorError
from shopfloor.evals import EvalStore
from shopfloor.gateway._errors import status_for
from shopfloor.gateway._governance import ServerGovernance
from shopfloor.gateway._mount import ASGIReceive, ASGIScope, ASGISend, SubApp
from shopfloor.gateway._permissions import CONSOLE_PERMISSIONS, authorize_route
from shopfloor.gateway.api import ControlPlane
from shopfloor.gateway.console._sessions import ConsoleSession, SessionStore
from shopfloor.ops.releases import Deployments
from shopfloor.security import Authenticator, Principal, Resource

__all__ = ["CSP", "Console", "ConsoleApp", "build_console"]

COOKIE = "sf_console"
LOGIN_COOKIE = "sf_console_login"
#: scripts and styles from the console's own static files only: no inline script, no event handler
#: attribute, no ``javascript:`` URL runs, whatever the page shows
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; "
    "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
_HEADERS = [
    (b"content-security-policy", CSP.encode()),
    (b"x-frame-options", b"DENY"),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"same-origin"),
    (b"cross-origin-opener-policy", b"same-origin"),
]
#: the static files by name: (path under ``static/``, media type); ``vendor/`` holds the charting library
#: (uPlot, from npm: ``scripts/vendor_console.sh``)
_STATIC = {
    "console.js": ("console.js", "text/javascript"),
    "console.css": ("console.css", "text/css"),
    "uplot.js": ("vendor/uplot.js", "text/javascript"),
    "uplot.css": ("vendor/uplot.css", "text/css"),
}
#: form bodies the console accepts (the server's body limit applies first)
_MAX_FORM = 64 * 1024


class SignInRequired(Exception):
    """No live session: pages redirect to the sign-in page, fragments and forms answer 401."""


class CsrfRefused(Exception):
    """A POST without this session's CSRF token, or from another origin."""


@dataclass(frozen=True, kw_only=True)
class Console:
    """What every page works with, passed to each page builder explicitly."""

    plane: ControlPlane
    authenticator: Authenticator
    server: ServerGovernance
    sessions: SessionStore
    #: the evaluation harness's store (the runtime's database), read only
    evals: EvalStore
    #: the release registry and deployments (the server's audit log; the object store opened when a
    #: release's files are verified)
    deployments: Deployments
    settings: ConsoleSettings
    env: Environment

    def can(self, principal: Principal, permission: str) -> bool:
        """Whether ``principal`` holds ``permission`` on its own team's resources (what a page offers)."""
        kind = permission.partition(":")[0]
        return self.plane.governance.authorizer.allows(
            principal, permission, Resource(kind=kind, team=principal.team)
        )

    async def signed_in(self, request: Request) -> ConsoleSession:
        """The dependency of every page but the sign-in page: the request's live session (else
        ``SignInRequired``), its CSRF token on a POST, and the page's permission."""
        session = await asyncio.to_thread(self.sessions.find, request.cookies.get(COOKIE))
        if session is None:
            raise SignInRequired
        request.state.session = session
        if request.method == "POST":
            form = await read_form(request)
            if not _same_origin(request) or not session.csrf_ok(form.get("csrf")):
                raise CsrfRefused
            request.state.form = form
        route = request.scope["route"]
        await asyncio.to_thread(
            authorize_route,
            self.plane.governance.authorizer,
            session.principal,
            request.method,
            route.path,
            CONSOLE_PERMISSIONS,
        )
        return session

    def render(self, request: Request, template: str, *, status: int = 200, **context: Any) -> HTMLResponse:
        session: ConsoleSession | None = getattr(request.state, "session", None)
        principal = session.principal if session else None
        html = self.env.get_template(template).render(
            session=session,
            principal=principal,
            can=(lambda permission: principal is not None and self.can(principal, permission)),
            refresh_ms=int(self.settings.refresh_seconds * 1000),
            **context,
        )
        return HTMLResponse(html, status_code=status, headers={"Cache-Control": "no-store"})


async def read_form(request: Request) -> dict[str, str]:
    """An ``application/x-www-form-urlencoded`` body (each field's first value)."""
    if "application/x-www-form-urlencoded" not in request.headers.get("content-type", ""):
        return {}
    body = await request.body()
    if len(body) > _MAX_FORM:
        raise ShopfloorError(f"the form is larger than {_MAX_FORM} bytes")
    parsed = urllib.parse.parse_qs(body.decode("utf-8", "replace"), keep_blank_values=True)
    return {name: values[0] for name, values in parsed.items()}


def _same_origin(request: Request) -> bool:
    """A POST from another site is refused (SameSite=Strict keeps the cookie from it too)."""
    origin = request.headers.get("origin")
    if origin is None or origin == "null":
        return origin is None
    return origin == f"{request.url.scheme}://{request.headers.get('host', '')}"


def _safe_next(target: str | None) -> str:
    """Where to go after signing in: a console page of this server only (no open redirect)."""
    if target and target.startswith("/console/") and not target.startswith("//") and "\\" not in target:
        return target
    return "/console/"


def _client(request: Request) -> str:
    return request.client.host if request.client else ""


def _cookie(
    response: Response, request: Request, name: str, value: str, max_age: int, path: str, *, secure: bool
) -> None:
    response.set_cookie(
        name,
        value,
        max_age=max_age,
        path=path,
        httponly=True,
        samesite="strict",
        secure=secure or request.url.scheme == "https",
    )


def _sign_in_routes(app: FastAPI, console: Console) -> None:
    Session = Annotated[ConsoleSession, Depends(console.signed_in)]

    def login_page(request: Request, *, error: str = "", status: int = 200) -> HTMLResponse:
        token = request.cookies.get(LOGIN_COOKIE) or secrets.token_urlsafe(32)
        response = console.render(
            request,
            "login.html",
            status=status,
            error=error,
            login_csrf=token,
            next=_safe_next(request.query_params.get("next")),
        )
        _cookie(
            response,
            request,
            LOGIN_COOKIE,
            token,
            3600,
            "/console/login",
            secure=console.settings.secure_cookies,
        )
        return response

    @app.get("/console/login")
    async def login(request: Request) -> Response:
        return login_page(request)

    @app.post("/console/login")
    async def do_login(request: Request) -> Response:
        form = await read_form(request)
        expected = request.cookies.get(LOGIN_COOKIE, "")
        sent = form.get("login_csrf", "")
        if (
            not expected
            or not _same_origin(request)
            or not hmac.compare_digest(expected.encode(), sent.encode())
        ):
            return login_page(request, error="The form expired; sign in again.", status=403)
        key = form.get("api_key", "").strip()
        try:
            principal = await asyncio.to_thread(console.authenticator.authenticate, f"Bearer {key}")
        except AuthenticationError as error:
            await asyncio.to_thread(console.server.failed, error, _client(request))
            return login_page(request, error="That key was not accepted.", status=401)
        await asyncio.to_thread(console.server.succeeded, principal, _client(request))
        token, _ = await asyncio.to_thread(console.sessions.create, principal)
        response = RedirectResponse(_safe_next(form.get("next")), status_code=303)
        _cookie(
            response,
            request,
            COOKIE,
            token,
            int(console.settings.session_seconds),
            "/",
            secure=console.settings.secure_cookies,
        )
        response.delete_cookie(LOGIN_COOKIE, path="/console/login")
        return response

    @app.post("/console/logout")
    async def logout(request: Request, session: Session) -> Response:
        await asyncio.to_thread(console.sessions.delete, request.cookies.get(COOKIE, ""))
        response = RedirectResponse("/console/login", status_code=303)
        response.delete_cookie(COOKIE, path="/")
        return response

    @app.get("/console/static/{name}")
    async def static(name: str) -> Response:
        if name not in _STATIC:
            raise StarletteHTTPException(404, f"no static file {name!r}")
        path, media_type = _STATIC[name]
        found = resources.files("shopfloor.gateway.console").joinpath("static", *path.split("/"))
        if not found.is_file():  # the charting library before scripts/vendor_console.sh ran
            raise StarletteHTTPException(404, f"{name} is not installed: run scripts/vendor_console.sh")
        return Response(found.read_bytes(), media_type=media_type, headers={"Cache-Control": "max-age=300"})


def _error_handlers(app: FastAPI, console: Console) -> None:
    @app.exception_handler(SignInRequired)
    async def sign_in(request: Request, exc: Exception) -> Response:
        if request.method != "GET" or request.url.path.endswith(("/rows", "/live", "/events", "/stream")):
            return Response("sign in first", status_code=401, media_type="text/plain")
        target = urllib.parse.quote(request.url.path + (f"?{request.url.query}" if request.url.query else ""))
        return RedirectResponse(f"/console/login?next={target}", status_code=303)

    @app.exception_handler(CsrfRefused)
    async def csrf(request: Request, exc: Exception) -> Response:
        message = "This form is no longer valid (its CSRF token is missing or stale): reload the page."
        return console.render(request, "error.html", status=403, message=message)

    @app.exception_handler(ShopfloorError)
    async def shopfloor_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, ShopfloorError)
        return console.render(request, "error.html", status=status_for(exc), message=str(exc))

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, RequestValidationError)
        problems = "; ".join(
            f"{'.'.join(str(part) for part in e.get('loc', ()))}: {e.get('msg', '')}" for e in exc.errors()
        )
        return console.render(request, "error.html", status=422, message=problems)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, StarletteHTTPException)
        return console.render(request, "error.html", status=exc.status_code, message=str(exc.detail))


def build_console(console: Console) -> FastAPI:
    """The console's pages as one FastAPI application (no OpenAPI document: they are not the API)."""
    from shopfloor.gateway.console._agents import agent_routes
    from shopfloor.gateway.console._audit import audit_routes
    from shopfloor.gateway.console._evals import eval_routes
    from shopfloor.gateway.console._gateway import gateway_routes
    from shopfloor.gateway.console._home import home_routes
    from shopfloor.gateway.console._metrics import metrics_routes
    from shopfloor.gateway.console._releases import release_routes
    from shopfloor.gateway.console._replay import replay_routes
    from shopfloor.gateway.console._runs import run_routes
    from shopfloor.gateway.console._workspaces import workspace_routes

    app = FastAPI(openapi_url=None, docs_url=None, redoc_url=None)
    _error_handlers(app, console)
    _sign_in_routes(app, console)
    home_routes(app, console)
    run_routes(app, console)
    workspace_routes(app, console)
    agent_routes(app, console)
    release_routes(app, console)
    replay_routes(app, console)
    audit_routes(app, console)
    eval_routes(app, console)
    gateway_routes(app, console)
    metrics_routes(app, console)
    return app


class ConsoleApp(SubApp):
    """The console under the server: ``/`` and ``/console`` redirect into it; ``/console/`` is its page
    tree."""

    paths = frozenset({"/", "/console"})
    prefixes = frozenset({"/console/"})

    def __init__(self, console: Console) -> None:
        self.console = console
        self.app = build_console(console)

    async def __call__(self, scope: ASGIScope, receive: ASGIReceive, send: ASGISend) -> None:
        async def secured(message: MutableMapping[str, Any]) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), *_HEADERS]
            await send(message)

        if scope["path"] in self.paths:
            await secured(
                {"type": "http.response.start", "status": 303, "headers": [(b"location", b"/console/")]}
            )
            await secured({"type": "http.response.body", "body": b""})
            return
        await self.app(scope, receive, secured)

    def openapi_paths(self) -> dict[str, Any]:
        entry = {
            "get": {
                "summary": "The web console: a redirect to its pages under /console/",
                "tags": ["console"],
                "responses": {"303": {"description": "to /console/ (its sign-in page without a session)"}},
            }
        }
        return {path: entry for path in sorted(self.paths)}

    async def shutdown(self) -> None:
        await asyncio.to_thread(self.console.sessions.close)
        await asyncio.to_thread(self.console.evals.close)
        await asyncio.to_thread(self.console.deployments.releases.close)
