"""The OpenAPI path items the server merges into ``/openapi.json``."""

from __future__ import annotations

import json

from shopfloor.gateway.inference._openapi import openapi_paths


def test_the_paths_describe_the_bodies_without_dangling_references() -> None:
    paths = openapi_paths()
    assert set(paths) == {"/v1/chat/completions", "/v1/completions", "/v1/embeddings", "/v1/models"}
    assert "$ref" not in json.dumps(paths)  # everything inlined: nothing points at a missing component
    chat = paths["/v1/chat/completions"]["post"]
    schema = chat["requestBody"]["content"]["application/json"]["schema"]
    assert {"model", "messages"} <= set(schema["required"])
    assert schema["additionalProperties"] is False
    message = schema["properties"]["messages"]["items"]
    assert "developer" in message["properties"]["role"]["enum"]
    assert {"400", "401", "413", "429", "502"} <= set(chat["responses"])
    assert "text/event-stream" in chat["responses"]["200"]["content"]
