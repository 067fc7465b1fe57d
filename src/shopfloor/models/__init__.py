"""Models: the Model ABC and its providers, chosen by reference string."""

from shopfloor.models._base import (
    Embeddings,
    Message,
    Model,
    ModelRequest,
    ModelResponse,
    TextDelta,
    TextRequest,
    ToolCall,
    ToolDef,
    Usage,
    UsageMeter,
    allow_model_requests,
    check_model_requests_allowed,
)
from shopfloor.models._catalogue import DEFAULT_CATALOGUE, Catalogue, CatalogueEntry, ModelPart
from shopfloor.models._function import FunctionModel, ModelFunction
from shopfloor.models._install import (
    InstallResult,
    ModelStatus,
    install_model,
    list_models,
    model_path,
    remove_model,
)
from shopfloor.models._local import LocalModel
from shopfloor.models._openai import OpenAIModel
from shopfloor.models._prefix_disk import PromptCache
from shopfloor.models._registry import ProviderFactory, model_providers, resolve_model
from shopfloor.models._retry import RETRYABLE_STATUS, RetryPolicy, parse_retry_after
from shopfloor.models._test import TestModel
from shopfloor.models._weights import LoadedWeights

__all__ = [
    "DEFAULT_CATALOGUE",
    "RETRYABLE_STATUS",
    "Catalogue",
    "CatalogueEntry",
    "Embeddings",
    "FunctionModel",
    "InstallResult",
    "LoadedWeights",
    "LocalModel",
    "Message",
    "Model",
    "ModelFunction",
    "ModelPart",
    "ModelRequest",
    "ModelResponse",
    "ModelStatus",
    "OpenAIModel",
    "PromptCache",
    "ProviderFactory",
    "RetryPolicy",
    "TestModel",
    "TextDelta",
    "TextRequest",
    "ToolCall",
    "ToolDef",
    "Usage",
    "UsageMeter",
    "allow_model_requests",
    "check_model_requests_allowed",
    "install_model",
    "list_models",
    "model_path",
    "model_providers",
    "parse_retry_after",
    "remove_model",
    "resolve_model",
]
