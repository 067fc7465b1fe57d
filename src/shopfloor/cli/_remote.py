"""The command line against a server (``SHOPFLOOR_URL`` and ``SHOPFLOOR_API_KEY``): the same run,
trace, metrics and workspace commands and output as in local mode, each a call of the server's API
instead of the runtime or the stores.

``RemoteRuntime`` has the methods of ``Runtime`` the commands use and answers with the same records
and events, rebuilt from the API's JSON, so the printing code is the same in both modes. The read-only
commands (``trace``, ``metrics``, ``ws ls|log|cat|diff``) call ``remote_get``, ``keys`` ``remote_call``.
A refusal is raised as the error class the server named (``WorkspaceNotFoundError``,
``RunStateError``, ...), with its message.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from pathlib import Path
from types import TracebackType
from typing import Any
from urllib.parse import quote

import httpx

from shopfloor import errors
from shopfloor.config import ClientSettings
from shopfloor.errors import (
    AuthenticationError,
    ConfigError,
    PermissionDeniedError,
    RemoteCallError,
    RunNotFoundError,
    RunStateError,
    ShopfloorError,
)

__all__ = ["RemoteRuntime", "remote_call", "remote_get", "remote_metrics", "remote_spans"]

_BY_STATUS: dict[int, type[Exception]] = {401: AuthenticationError, 404: RunNotFoundError, 409: RunStateError}
#: the server's error classes (its body's ``type``) raised here as themselves; the others by status
_BY_TYPE: dict[str, type[Exception]] = {
    name: cls
    for name in errors.__all__
    if isinstance(cls := getattr(errors, name), type)
    and issubclass(cls, ShopfloorError)
    and cls.__init__ is ShopfloorError.__init__  # built from a message alone
}


def _raise_for(response: httpx.Response) -> None:
    if response.is_success:
        return
    kind = None
    try:
        body = response.json()
        kind = body.get("type")
        detail = body.get("detail")
        if isinstance(detail, list):  # request validation: name each field
            detail = "; ".join(f"{'.'.join(map(str, d.get('loc', [])))}: {d.get('msg')}" for d in detail)
    except (ValueError, AttributeError):
        detail = response.text[:500]
    message = f"the server answered {response.status_code}: {detail}"
    if response.status_code == 403:
        raise PermissionDeniedError("(see the server's message)", principal=message)
    if response.status_code < 500 and isinstance(kind, str) and kind in _BY_TYPE:
        raise _BY_TYPE[kind](message)
    raise _BY_STATUS.get(response.status_code, RemoteCallError)(message)


class RemoteRuntime:
    """A client of a Shopfloor server's Runs API with the run methods of ``Runtime``."""

    def __init__(self, client: ClientSettings, *, transport: httpx.AsyncBaseTransport | None = None) -> None:
        if not client.url:
            raise ConfigError("SHOPFLOOR_URL is not set")
        headers = {"Authorization": f"Bearer {client.api_key}"} if client.api_key else {}
        self.http = httpx.AsyncClient(
            base_url=client.url.rstrip("/"), headers=headers, timeout=client.timeout, transport=transport
        )

    async def __aenter__(self) -> RemoteRuntime:
        return self

    async def __aexit__(self, *exc: type[BaseException] | BaseException | TracebackType | None) -> None:
        await self.http.aclose()

    async def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        try:
            response = await self.http.request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            raise RemoteCallError(f"cannot reach the server at {self.http.base_url}: {exc}") from exc
        _raise_for(response)
        return response.json()

    @staticmethod
    def _record(data: dict[str, Any]) -> Any:
        from shopfloor.runtime import RunRecord

        data = dict(data)
        data.pop("total_tokens", None)
        return RunRecord(**data)

    async def start_run(
        self,
        spec: str | Path | None,
        task: str,
        *,
        model: str | None = None,
        detach: bool = False,
        agent: str | None = None,
    ) -> str:
        """Run ``spec``: a directory or file here registers it by its path on the server (which must
        see the same file system); anything else (or ``agent``) names an agent registered with or
        deployed on the server."""
        name = agent or str(spec)
        local = await asyncio.to_thread(
            lambda: Path(name).resolve() if agent is None and Path(name).exists() else None
        )
        if local is not None:
            registered = await self._call("POST", "/v1/agents", json={"path": str(local)})
            name = registered["name"]
        body = {"agent": name, "input": task, "model": model}
        return str((await self._call("POST", "/v1/runs", json=body))["run_id"])

    async def fork_run(self, run_id: str, step: int, *, detach: bool = False) -> str:
        """``POST /v1/runs/{id}/fork``: the fork runs on the server (detached or not)."""
        return str((await self._call("POST", f"/v1/runs/{run_id}/fork", json={"step": step}))["run_id"])

    async def feedback(self, run_id: str, body: dict[str, Any]) -> dict[str, Any]:
        """``POST /v1/runs/{id}/feedback``: the stored feedback, as the server answers it."""
        answer: dict[str, Any] = await self._call("POST", f"/v1/runs/{run_id}/feedback", json=body)
        return answer

    async def get_run(self, run_id: str) -> Any:
        return self._record(await self._call("GET", f"/v1/runs/{run_id}"))

    async def children(self, run_id: str) -> list[Any]:
        """``GET /v1/runs/{id}/children``: the run's child runs, oldest first."""
        return [self._record(run) for run in await self._call("GET", f"/v1/runs/{run_id}/children")]

    async def list_runs(
        self, *, limit: int = 50, status: str | None = None, agent: str | None = None
    ) -> list[Any]:
        params = {
            k: v for k, v in {"limit": limit, "status": status, "agent": agent}.items() if v is not None
        }
        page = await self._call("GET", "/v1/runs", params=params)
        return [self._record(run) for run in page["runs"]]

    async def wait(self, run_id: str) -> Any:
        while True:
            record = await self.get_run(run_id)
            if record.done:
                return record
            await asyncio.sleep(0.2)

    async def events(self, run_id: str, *, after: int = -1, follow: bool = True) -> AsyncIterator[Any]:
        from shopfloor.agent import RunEvent
        from shopfloor.runtime import StoredEvent

        headers = {"Last-Event-ID": str(after)}
        params = {"follow": "true" if follow else "false"}
        url = f"/v1/runs/{run_id}/events"
        async with self.http.stream("GET", url, headers=headers, params=params, timeout=None) as response:
            if not response.is_success:
                await response.aread()
                _raise_for(response)
            async for line in response.aiter_lines():
                if line.startswith("data: "):
                    data = json.loads(line[6:])
                    seq, at = data.pop("seq"), data.pop("at")
                    yield StoredEvent(seq=seq, at=at, event=RunEvent(**data))

    async def _decide(
        self, verb: str, run_id: str, by: str | None, reason: str, proposal: dict[str, Any] | None = None
    ) -> Any:
        if by is not None:
            raise ConfigError(f"--by: against a server the decision is the API key's ({verb} without --by)")
        body: dict[str, Any] = {"reason": reason}
        if proposal is not None:
            body["proposal"] = proposal
        return self._record(await self._call("POST", f"/v1/runs/{run_id}/{verb}", json=body))

    async def approve(
        self, run_id: str, *, by: str | None = None, reason: str = "", proposal: dict[str, Any] | None = None
    ) -> Any:
        return await self._decide("approve", run_id, by, reason, proposal)

    async def reject(self, run_id: str, *, by: str | None = None, reason: str = "") -> Any:
        return await self._decide("reject", run_id, by, reason)

    async def cancel(self, run_id: str) -> Any:
        return self._record(await self._call("POST", f"/v1/runs/{run_id}/cancel"))

    async def prune(self, *, older_than_days: float) -> int:
        raise ConfigError("`shopfloor runs prune` runs on the server's machine, not through SHOPFLOOR_URL")


def remote_call(
    client: ClientSettings,
    method: str,
    path: str,
    params: dict[str, Any] | None = None,
    *,
    json_body: Any = None,
) -> httpx.Response:
    """``METHOD path`` on the server with the key; the error the server named if it refused."""
    headers = {"Authorization": f"Bearer {client.api_key}"} if client.api_key else {}
    url = f"{(client.url or '').rstrip('/')}{path}"
    query = {k: v for k, v in (params or {}).items() if v is not None}
    try:
        response = httpx.request(
            method, url, headers=headers, params=query, json=json_body, timeout=client.timeout
        )
    except httpx.HTTPError as exc:
        raise RemoteCallError(f"cannot reach the server at {client.url}: {exc}") from exc
    _raise_for(response)
    return response


def remote_get(client: ClientSettings, path: str, params: dict[str, Any] | None = None) -> httpx.Response:
    """``GET path`` on the server with the key; the error the server named if it refused."""
    return remote_call(client, "GET", path, params)


def remote_metrics(client: ClientSettings, *, since_ns: int | None, agent: str | None) -> Any:
    """The server's ``MetricsReport`` (``/v1/metrics/agents``), as ``compute_metrics`` gives it here."""
    from shopfloor.telemetry import MetricsReport

    since = None if since_ns is None else max(time.time() - since_ns / 1e9, 1e-3)
    data = remote_get(client, "/v1/metrics/agents", {"since_seconds": since, "agent": agent}).json()
    return MetricsReport.from_dict(data)


def remote_spans(client: ClientSettings, run_id: str) -> tuple[str, list[Any]]:
    """The run's full id and spans, from the server's ``/v1/runs/{id}/trace`` tree, as the trace store
    would give them here (so ``shopfloor trace`` prints the same either way)."""
    from shopfloor.telemetry import SpanRecord

    document = remote_get(client, f"/v1/runs/{quote(run_id, safe='')}/trace").json()
    spans: list[SpanRecord] = []
    fields = set(SpanRecord.__dataclass_fields__)
    pending = list(document["spans"])
    while pending:
        node = pending.pop()
        pending.extend(node.get("children", []))
        spans.append(SpanRecord(**{key: value for key, value in node.items() if key in fields}))
    spans.sort(key=lambda span: (span.start_ns, span.span_id))
    return str(document["run_id"]), spans
