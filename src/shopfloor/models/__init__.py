"""Models: the Model ABC and its providers, chosen by reference string."""

from shopfloor.models._base import (
    Message,
    Model,
    ModelRequest,
    ModelResponse,
    TextDelta,
    ToolCall,
    ToolDef,
    Usage,
    UsageMeter,
    allow_model_requests,
    check_model_requests_allowed,
)
from shopfloor.models._function import FunctionModel, ModelFunction
from shopfloor.models._openai import OpenAIModel
from shopfloor.models._registry import ProviderFactory, provider_names, register_provider, resolve_model
from shopfloor.models._retry import RetryPolicy
from shopfloor.models._test import TestModel

__all__ = [
    "FunctionModel",
    "Message",
    "Model",
    "ModelFunction",
    "ModelRequest",
    "ModelResponse",
    "OpenAIModel",
    "ProviderFactory",
    "RetryPolicy",
    "TestModel",
    "TextDelta",
    "ToolCall",
    "ToolDef",
    "Usage",
    "UsageMeter",
    "allow_model_requests",
    "check_model_requests_allowed",
    "provider_names",
    "register_provider",
    "resolve_model",
]
