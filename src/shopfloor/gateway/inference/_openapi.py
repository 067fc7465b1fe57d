"""The OpenAPI 3.1 path items of the gateway's endpoints, from the same pydantic models that validate
the bodies (so the document cannot drift from what is accepted)."""

from __future__ import annotations

import functools
from typing import Any

from shopfloor.gateway.inference._schema import ChatRequest, CompletionRequest, EmbeddingRequest

__all__ = ["openapi_paths"]

_ERROR = {
    "description": "An error in the OpenAI shape",
    "content": {
        "application/json": {
            "schema": {
                "type": "object",
                "required": ["error"],
                "properties": {
                    "error": {
                        "type": "object",
                        "required": ["message", "type"],
                        "properties": {
                            "message": {"type": "string"},
                            "type": {"type": "string"},
                            "param": {"type": ["string", "null"]},
                            "code": {"type": ["string", "null"]},
                        },
                    }
                },
            }
        }
    },
}
_ERRORS = {str(status): _ERROR for status in (400, 401, 404, 405, 413, 429, 502, 504)}


def _inline(node: Any, defs: dict[str, Any]) -> Any:
    """``node`` with every ``$ref`` to ``#/$defs/X`` replaced by X (the models are not recursive)."""
    if isinstance(node, dict):
        ref = node.get("$ref")
        if isinstance(ref, str) and ref.startswith("#/$defs/"):
            return _inline(defs[ref.removeprefix("#/$defs/")], defs)
        return {k: _inline(v, defs) for k, v in node.items() if k != "$defs"}
    if isinstance(node, list):
        return [_inline(v, defs) for v in node]
    return node


def _body(model: Any) -> dict[str, Any]:
    schema = model.model_json_schema()
    return {
        "required": True,
        "content": {"application/json": {"schema": _inline(schema, schema.get("$defs", {}))}},
    }


def _post(summary: str, model: Any, streams: bool) -> dict[str, Any]:
    content: dict[str, Any] = {"application/json": {"schema": {"type": "object"}}}
    if streams:
        content["text/event-stream"] = {"schema": {"type": "string"}}
    return {
        "post": {
            "summary": summary,
            "tags": ["inference"],
            "security": [{"bearer": []}],
            "requestBody": _body(model),
            "responses": {"200": {"description": "The answer", "content": content}, **_ERRORS},
        }
    }


@functools.cache
def openapi_paths() -> dict[str, Any]:
    return {
        "/v1/chat/completions": _post("Chat completion (OpenAI-compatible)", ChatRequest, True),
        "/v1/completions": _post("Text completion (OpenAI-compatible)", CompletionRequest, True),
        "/v1/embeddings": _post("Embeddings (OpenAI-compatible)", EmbeddingRequest, False),
        "/v1/models": {
            "get": {
                "summary": "The models (routes and aliases) served",
                "tags": ["inference"],
                "security": [{"bearer": []}],
                "responses": {
                    "200": {
                        "description": "The model list",
                        "content": {"application/json": {"schema": {"type": "object"}}},
                    },
                    "401": _ERROR,
                },
            }
        },
    }
