"""FunctionModel: a model driven by a Python callable or a list of scripted outputs.

``function:package.module:callable`` resolves the callable by import. The callable
receives the request and returns text (or a dict, sent as JSON) or a full
``ModelResponse``; it may be async.
"""

from __future__ import annotations

import importlib
import inspect
import json
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any

from shopfloor.config import Settings
from shopfloor.errors import ModelOutputError, UnknownModelError
from shopfloor.models._base import Model, ModelRequest, ModelResponse, TextDelta, UsageMeter

#: replies ``_reply`` hands back without ``inspect.isawaitable`` (no ``__await__``; not their subclasses)
_NEVER_AWAITABLE = frozenset({str, dict, list, ModelResponse})

__all__ = ["FunctionModel", "ModelFunction", "make_function_model"]

Reply = str | dict[str, Any] | ModelResponse
ModelFunction = Callable[[ModelRequest], Reply | Awaitable[Reply]]


class FunctionModel(Model):
    provider = "function"
    is_real = False

    def __init__(
        self,
        function: ModelFunction | None = None,
        *,
        outputs: Sequence[Reply] | None = None,
        name: str = "",
        context_length: int = 8192,
    ) -> None:
        if (function is None) == (outputs is None):
            raise ValueError("FunctionModel takes either a function or a list of outputs")
        super().__init__(name or getattr(function, "__name__", "scripted"), context_length=context_length)
        self._function = function
        self._outputs = list(outputs or [])
        self.calls = 0

    async def _reply(self, request: ModelRequest) -> Reply:
        if self._function is not None:
            reply = self._function(request)
            if type(reply) in _NEVER_AWAITABLE:  # ``inspect.isawaitable`` is 6 Python calls on a plain value
                return reply  # type: ignore[return-value]  # one of the Reply types, exactly
            return await reply if inspect.isawaitable(reply) else reply
        step = sum(1 for m in request.messages if m.role == "assistant")
        if step >= len(self._outputs):
            raise ModelOutputError(
                f"scripted FunctionModel has {len(self._outputs)} outputs; step {step} asked"
            )
        return self._outputs[step]

    async def stream(self, request: ModelRequest) -> AsyncIterator[TextDelta | ModelResponse]:
        meter = UsageMeter()
        self.calls += 1
        reply = await self._reply(request)
        if isinstance(reply, ModelResponse):
            yield reply
            return
        text = reply if isinstance(reply, str) else json.dumps(reply)
        meter.first_token()
        yield TextDelta(text=text)
        yield ModelResponse(
            text=text,
            model=self.name,
            provider=self.provider,
            usage=meter.usage(self.count_message_tokens(request.messages), self.count_tokens(text)),
        )


def make_function_model(name: str, settings: Settings) -> Model:
    module_name, _, attr = name.rpartition(":")
    if not module_name:
        raise UnknownModelError(f"'function:{name}': expected function:MODULE:CALLABLE")
    try:
        function = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as exc:
        raise UnknownModelError(f"'function:{name}': cannot import {attr} from {module_name}: {exc}") from exc
    return FunctionModel(function, name=name)
