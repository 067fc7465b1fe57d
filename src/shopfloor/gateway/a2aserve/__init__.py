"""A2A: every agent registered with ``shopfloor serve`` is an A2A 1.0 server (``a2a-sdk``), its tasks
durable runs (``RunTasks``), its card at ``/a2a/NAME/.well-known/agent-card.json``."""

from shopfloor.gateway.a2aserve._app import A2A_PREFIX, A2A_ROUTE, CARD_PATH, A2AGateway
from shopfloor.gateway.a2aserve._handler import AGENT_KEY, PRINCIPAL_KEY, RunTasks, task_of

__all__ = [
    "A2A_PREFIX",
    "A2A_ROUTE",
    "AGENT_KEY",
    "CARD_PATH",
    "PRINCIPAL_KEY",
    "A2AGateway",
    "RunTasks",
    "task_of",
]
