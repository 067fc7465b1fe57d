"""The control plane's HTTP API: agents, runs (with SSE events and approvals), API keys, health probes."""

from shopfloor.gateway.api._agents import agents_router
from shopfloor.gateway.api._auth import principal_dependency
from shopfloor.gateway.api._feedback import FeedbackIn, feedback_router
from shopfloor.gateway.api._health import health_router
from shopfloor.gateway.api._keys import KeyCreate, KeyCreated, KeyOut, keys_router
from shopfloor.gateway.api._models import AgentRegister, ApproveIn, DecisionIn, ForkIn, RunCreate, RunPage
from shopfloor.gateway.api._observe import observe_router
from shopfloor.gateway.api._plane import ControlPlane
from shopfloor.gateway.api._runs import runs_router, sse_frames
from shopfloor.gateway.api._store import AgentRecord, ControlStore
from shopfloor.gateway.api._workspaces import tar_stream, workspaces_router

__all__ = [
    "AgentRecord",
    "AgentRegister",
    "ApproveIn",
    "ControlPlane",
    "ControlStore",
    "DecisionIn",
    "FeedbackIn",
    "ForkIn",
    "KeyCreate",
    "KeyCreated",
    "KeyOut",
    "RunCreate",
    "RunPage",
    "agents_router",
    "feedback_router",
    "health_router",
    "keys_router",
    "observe_router",
    "principal_dependency",
    "runs_router",
    "sse_frames",
    "tar_stream",
    "workspaces_router",
]
