"""Raw ASGI plumbing of the gateway's hot path: bodies with a size limit, JSON and SSE responses, and
errors in the shape the OpenAI clients parse (``{"error": {"message", "type", "param", "code"}}``).

No framework: a request costs a few dictionary look-ups here, and every response header list that does
not vary is built once, at import.
"""

from __future__ import annotations

import orjson

from shopfloor.errors import GatewayRequestError
from shopfloor.gateway._mount import ASGIReceive, ASGIScope, ASGISend

__all__ = [
    "JSON_HEADERS",
    "SSE_HEADERS",
    "ClientGone",
    "error_body",
    "header",
    "read_body",
    "send_bytes",
]

JSON_HEADERS = [(b"content-type", b"application/json")]
SSE_HEADERS = [
    (b"content-type", b"text/event-stream; charset=utf-8"),
    (b"cache-control", b"no-cache"),
    (b"x-accel-buffering", b"no"),
]

#: the OpenAI error ``type`` of each status the gateway answers with
_ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    405: "invalid_request_error",
    413: "invalid_request_error",
    415: "invalid_request_error",
    429: "rate_limit_error",
}


class ClientGone(Exception):
    """The client closed the connection before its request was read."""


def header(scope: ASGIScope, name: bytes) -> bytes | None:
    """The first value of header ``name`` (lower case), or None."""
    for key, value in scope["headers"]:
        if key == name:
            return value  # type: ignore[no-any-return]
    return None


def error_body(status: int, message: str, *, param: str | None = None, code: str | None = None) -> bytes:
    kind = _ERROR_TYPES.get(status, "api_error" if status >= 500 else "invalid_request_error")
    return orjson.dumps({"error": {"message": message, "type": kind, "param": param, "code": code}})


async def read_body(scope: ASGIScope, receive: ASGIReceive, limit: int) -> bytes:
    """The whole request body; GatewayRequestError (413) past ``limit`` bytes, before reading them all
    where the client announced its length."""
    length = header(scope, b"content-length")
    if length is not None and length.isdigit() and int(length) > limit:
        raise GatewayRequestError(
            f"the request body is {int(length)} bytes; the limit is {limit}",
            status=413,
            code="body_too_large",
        )
    message = await receive()
    if message["type"] == "http.disconnect":
        raise ClientGone
    body: bytes = message.get("body", b"")
    if not message.get("more_body"):
        if len(body) > limit:
            raise GatewayRequestError(
                f"the request body is over {limit} bytes", status=413, code="body_too_large"
            )
        return body
    parts = [body]
    size = len(body)
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientGone
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise GatewayRequestError(
                f"the request body is over {limit} bytes", status=413, code="body_too_large"
            )
        parts.append(chunk)
        if not message.get("more_body"):
            return b"".join(parts)


async def send_bytes(
    send: ASGISend, status: int, body: bytes, headers: list[tuple[bytes, bytes]] = JSON_HEADERS
) -> None:
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
