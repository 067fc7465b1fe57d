"""Guardrails per gateway route (``[gateway.routes.NAME] guardrails = [...]``) on the request and
response path: the request's messages (or prompt, or embedding input) through the ``input`` stage before
it is admitted or sent; a model's answer through the ``output`` stage before the client sees it. Each
guardrail passes, redacts (the text sent on is the redacted one) or blocks: a block is a 400
``guardrail_blocked`` naming the guardrail and its reason, never the matched text. The verdict goes on
the request's span (``shopfloor.guardrail.*``).

A streamed answer is not held back to be checked whole, so a route whose guardrails check outputs
refuses ``stream: true`` (a 400 saying so) rather than let a stream past them.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import orjson

from shopfloor._registry import Registry
from shopfloor.config import Settings
from shopfloor.errors import ConfigError, GatewayRequestError
from shopfloor.gateway.inference._backend import Endpoint
from shopfloor.security import Guardrail, GuardrailResult, Guardrails, Stage, guardrails

__all__ = ["RouteGuardrails", "build_route_guardrails"]

#: span attributes of a verdict
ACTION = "shopfloor.guardrail.action"
NAMES = "shopfloor.guardrail.names"
REASONS = "shopfloor.guardrail.reasons"


class RouteGuardrails:
    """Each route's guardrails, by route name."""

    def __init__(self, by_route: Mapping[str, Guardrails]) -> None:
        self._by_route = dict(by_route)

    def __contains__(self, route: str) -> bool:
        return route in self._by_route

    def check_request(self, route: str, endpoint: Endpoint, data: dict[str, Any], span: Any) -> None:
        """Redact ``data``'s texts in place, or raise a 400 when a guardrail blocks it."""
        rails = self._by_route.get(route)
        if rails is None:
            return
        if data.get("stream") and _checks(rails, "output"):
            raise GatewayRequestError(
                f"route {route!r} checks model answers with guardrails "
                f"({', '.join(r.name for r in rails.rails)}), which a stream would get past: "
                "send stream: false",
                status=400,
                param="stream",
                code="guardrail_stream_unsupported",
            )
        if span is not None:
            span.set_attribute(ACTION, "pass")
        if endpoint == "chat/completions":
            # only what the messages say: a tool's result (role "tool") is checked as one
            messages = [m for m in data.get("messages") or () if isinstance(m, dict) and "content" in m]
            for stage in ("input", "tool_result"):
                chosen = [m for m in messages if (m.get("role") == "tool") == (stage == "tool_result")]
                guarded, result = rails.apply_value([m["content"] for m in chosen], stage)
                _verdict(span, result, route, "messages")
                for message, content in zip(chosen, guarded, strict=True):
                    message["content"] = content
            return
        field = "prompt" if endpoint == "completions" else "input"
        if field in data:
            data[field], result = rails.apply_value(data[field], "input")
            _verdict(span, result, route, field)

    def check_answer(self, route: str, endpoint: Endpoint, answer: bytes, span: Any) -> bytes:
        """The answer with its texts redacted, or a 400 when a guardrail blocks it."""
        rails = self._by_route.get(route)
        if rails is None or endpoint == "embeddings" or not _checks(rails, "output"):
            return answer
        try:
            parsed = orjson.loads(answer)
        except orjson.JSONDecodeError:
            return answer
        choices = parsed.get("choices") if isinstance(parsed, dict) else None
        if not isinstance(choices, list):
            return answer
        texts = [_text_of(choice) for choice in choices]
        guarded, result = rails.apply_value(texts, "output")
        _verdict(span, result, route, "output")
        if result.action == "pass":
            return answer
        for choice, text in zip(choices, guarded, strict=True):
            _set_text(choice, text)
        return orjson.dumps(parsed)


def _checks(rails: Guardrails, stage: Stage) -> bool:
    return any(stage in rail.stages for rail in rails.rails)


def _text_of(choice: Any) -> Any:
    if not isinstance(choice, dict):
        return None
    message = choice.get("message")
    if isinstance(message, dict):
        return message.get("content")
    return choice.get("text")


def _set_text(choice: Any, text: Any) -> None:
    message = choice.get("message")
    if isinstance(message, dict):
        message["content"] = text
    elif "text" in choice:
        choice["text"] = text


def _verdict(span: Any, result: GuardrailResult, route: str, where: str) -> None:
    if span is not None and result.action != "pass":  # "pass" was set before the first check
        span.set_attribute(ACTION, result.action)
        if result.guardrail:
            span.set_attribute(NAMES, result.guardrail)
        if result.reasons:
            span.set_attribute(REASONS, list(result.reasons))
    if result.action == "block":
        reason = "; ".join(result.reasons) or "blocked"
        raise GatewayRequestError(
            f"route {route!r}: guardrail {result.guardrail} blocked the "
            f"{'answer' if where == 'output' else where}: {reason}",
            status=400,
            param=None if where == "output" else where,
            code="guardrail_blocked",
        )


def build_route_guardrails(
    settings: Settings, registry: Registry[Callable[..., Guardrail]] | None = None
) -> RouteGuardrails | None:
    """The guardrails of every route that lists some (None when no route does)."""
    registry = registry or guardrails()
    by_route: dict[str, Guardrails] = {}
    for name, route in settings.gateway.routes.items():
        rails = []
        for index, entry in enumerate(route.guardrails):
            try:
                rails.append(registry.get(entry.name)(**entry.options))
            except (KeyError, TypeError, ValueError) as exc:
                raise ConfigError(
                    f"gateway.routes.{name}.guardrails[{index}] ({entry.name}): {exc}"
                ) from None
        if rails:
            by_route[name] = Guardrails(rails)
    return RouteGuardrails(by_route) if by_route else None
