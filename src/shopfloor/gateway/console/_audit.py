"""The console's audit log: the server's hash-chained log, newest page first, filtered by kind."""

# No `from __future__ import annotations`: FastAPI reads the pages' annotations (the local `Session`
# alias) when they are defined.

import asyncio
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Query, Request
from fastapi.responses import Response

from shopfloor.gateway.console._app import Console
from shopfloor.gateway.console._sessions import ConsoleSession

__all__ = ["audit_routes"]

PAGE = 100


def audit_routes(app: FastAPI, console: Console) -> None:
    Session = Annotated[ConsoleSession, Depends(console.signed_in)]
    audit = console.plane.governance.audit

    @app.get("/console/audit")
    async def entries(
        request: Request,
        session: Session,
        kind: Annotated[str | None, Query(max_length=128)] = None,
        after: Annotated[int | None, Query(ge=0)] = None,
        upto: Annotated[int | None, Query(ge=0)] = None,
    ) -> Response:
        """Unfiltered: the entries numbered up to ``upto`` (default the newest), a page at a time
        going back. Filtered by ``kind``: that kind's entries after ``after``, oldest first."""

        def read() -> dict[str, Any]:
            if kind:
                found = audit.entries(after=after or 0, limit=PAGE, kind=kind)
                following = found[-1].seq if len(found) == PAGE else None
                return {"entries": found, "older": None, "newer": None, "following": following}
            last = audit.tail(1)
            newest = last[0].seq if last else 0
            top = newest if upto is None else min(upto, newest)
            start = max(0, top - PAGE)
            found = audit.entries(after=start, limit=max(1, top - start)) if top > start else []
            return {
                "entries": list(reversed(found)),
                "older": start if start > 0 else None,
                "newer": min(newest, top + PAGE) if top < newest else None,
                "following": None,
            }

        page = await asyncio.to_thread(read)
        return console.render(request, "audit.html", kind=kind or "", **page)
