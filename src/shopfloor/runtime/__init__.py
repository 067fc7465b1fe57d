"""Durable runs on DBOS: a run is a workflow, each model call and tool call a recorded step.

``Runtime`` is the API (start, follow, wait, approve, reject, cancel, list, recorded
steps); ``DBOSStepRunner`` is the durable ``StepRunner`` of the agent loop;
``RunStore`` keeps one row per run and its events in the same database as DBOS.
``compose(settings)`` is the composition root: it builds the ``Services`` that the
command line, the worker and the server pass down.
"""

from shopfloor.runtime._environment import (
    RunEnvironment,
    audit_event,
    needs_workspace,
    open_environment,
    workspace_name,
)
from shopfloor.runtime._events import EventLog, StoredEvent, follow_events
from shopfloor.runtime._executor import (
    APP_NAME,
    APP_VERSION,
    RECOVERY_QUEUE,
    RUN_QUEUE,
    Supervisor,
    new_executor_id,
)
from shopfloor.runtime._launched import LaunchedRun
from shopfloor.runtime._runner import DBOSStepRunner, approval_topic
from shopfloor.runtime._runtime import Runtime
from shopfloor.runtime._services import (
    EvalFinder,
    RoutedRun,
    RunJudge,
    RunJudgement,
    RunRouter,
    Services,
    agent_resolvers,
    compose,
)
from shopfloor.runtime._steps import APPROVAL, RecordedStep, StepKind, recorded_steps_from, step_kind
from shopfloor.runtime._store import RunRecord, RunState, RunStore, Track
from shopfloor.runtime._workflow import WORKFLOW_NAME, run_workflow

__all__ = [
    "APPROVAL",
    "APP_NAME",
    "APP_VERSION",
    "RECOVERY_QUEUE",
    "RUN_QUEUE",
    "WORKFLOW_NAME",
    "DBOSStepRunner",
    "EvalFinder",
    "EventLog",
    "LaunchedRun",
    "RecordedStep",
    "RoutedRun",
    "RunEnvironment",
    "RunJudge",
    "RunJudgement",
    "RunRecord",
    "RunRouter",
    "RunState",
    "RunStore",
    "Runtime",
    "Services",
    "StepKind",
    "StoredEvent",
    "Supervisor",
    "Track",
    "agent_resolvers",
    "approval_topic",
    "audit_event",
    "compose",
    "follow_events",
    "needs_workspace",
    "new_executor_id",
    "open_environment",
    "recorded_steps_from",
    "run_workflow",
    "step_kind",
    "workspace_name",
]
