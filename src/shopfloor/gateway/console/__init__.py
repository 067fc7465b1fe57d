"""The web console of ``shopfloor serve``: server-rendered pages at ``/`` and ``/console/...`` over the
control plane's runtime, stores and authoriser, with server-side sessions, CSRF tokens and a strict
Content-Security-Policy."""

from shopfloor.gateway.console._app import CSP, Console, ConsoleApp, build_console
from shopfloor.gateway.console._render import WaterfallRow, make_environment, markdown_html, waterfall
from shopfloor.gateway.console._sessions import ConsoleSession, SessionStore

__all__ = [
    "CSP",
    "Console",
    "ConsoleApp",
    "ConsoleSession",
    "SessionStore",
    "WaterfallRow",
    "build_console",
    "make_environment",
    "markdown_html",
    "waterfall",
]
