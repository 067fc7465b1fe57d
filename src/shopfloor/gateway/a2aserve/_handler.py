"""``RunTasks``: the A2A request handler of one server, where an A2A task *is* a durable run.

The task id is the run id, so a task lives exactly as long as its run: it survives a restart of the
server (the run store and DBOS hold it, nothing is kept in this process), and any server process of
the same database answers ``GetTask`` for it. States map one to one (``waiting_approval`` is
``input-required``: a person approves through ``POST /v1/runs/ID/approve``); the final answer is the
task's artifact and its status message. A send starts the run as its caller (the authenticated
principal, with ``runs:start`` on the agent's team) and waits for it to end or to stop for an
approval, unless the client asked to return immediately; a stream sends the run's events as status
updates, as does a subscription to a running task.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncGenerator

from a2a.server.context import ServerCallContext
from a2a.server.events.event_queue import Event
from a2a.server.request_handlers.request_handler import RequestHandler
from a2a.types.a2a_pb2 import (
    AgentCard,
    Artifact,
    CancelTaskRequest,
    DeleteTaskPushNotificationConfigRequest,
    GetExtendedAgentCardRequest,
    GetTaskPushNotificationConfigRequest,
    GetTaskRequest,
    ListTaskPushNotificationConfigsRequest,
    ListTaskPushNotificationConfigsResponse,
    ListTasksRequest,
    ListTasksResponse,
    Message,
    Part,
    Role,
    SendMessageRequest,
    SubscribeToTaskRequest,
    Task,
    TaskPushNotificationConfig,
    TaskState,
    TaskStatus,
    TaskStatusUpdateEvent,
)
from a2a.utils.errors import (
    InvalidParamsError,
    InvalidRequestError,
    PushNotificationNotSupportedError,
    TaskNotCancelableError,
    TaskNotFoundError,
    UnsupportedOperationError,
)

from shopfloor.errors import (
    AgentNotFoundError,
    PermissionDeniedError,
    RunNotFoundError,
    RunStateError,
    ShopfloorError,
)
from shopfloor.gateway.api._store import AgentRecord, ControlStore
from shopfloor.runtime import RunRecord, Runtime
from shopfloor.security import Authorizer, Principal, Resource

__all__ = ["AGENT_KEY", "PRINCIPAL_KEY", "RunTasks", "task_of"]

PRINCIPAL_KEY = "shopfloor.principal"
AGENT_KEY = "shopfloor.agent"

_STATES: dict[str, int] = {
    "queued": TaskState.TASK_STATE_SUBMITTED,
    "running": TaskState.TASK_STATE_WORKING,
    "waiting_approval": TaskState.TASK_STATE_INPUT_REQUIRED,
    "completed": TaskState.TASK_STATE_COMPLETED,
    "failed": TaskState.TASK_STATE_FAILED,
    "cancelled": TaskState.TASK_STATE_CANCELED,
}
_STOPPED = frozenset({"completed", "failed", "cancelled", "waiting_approval"})
_MAX_PAGE = 100


def task_of(record: RunRecord) -> Task:
    """The A2A task of a run: state, a status message (the answer, the error, what waits for whom),
    the answer as an artifact once it completed, the task as the first history entry."""
    task = Task(id=record.run_id, context_id=record.run_id)
    task.status.state = _STATES[record.status]  # type: ignore[assignment]
    task.status.timestamp.FromSeconds(int(record.finished_at or record.started_at or record.created_at or 0))
    text = _status_text(record)
    if text:
        task.status.message.CopyFrom(_agent_message(record.run_id, text))
    if record.status == "completed":
        task.artifacts.append(
            Artifact(artifact_id=f"{record.run_id}-answer", name="answer", parts=[Part(text=text)])
        )
    task.history.append(
        Message(
            message_id=f"{record.run_id}-task",
            context_id=record.run_id,
            task_id=record.run_id,
            role=Role.ROLE_USER,
            parts=[Part(text=record.task)],
        )
    )
    return task


def _status_text(record: RunRecord) -> str:
    if record.status == "completed":
        return record.output or ""
    if record.status == "waiting_approval":
        who = ", ".join((record.approval or {}).get("approvers", []) or []) or "an approver"
        return f"waiting for {who} to approve: POST /v1/runs/{record.run_id}/approve"
    if record.status in ("failed", "cancelled"):
        return record.error or record.stop_reason or record.status
    return ""


def _agent_message(run_id: str, text: str) -> Message:
    return Message(
        message_id=f"{run_id}-{time.time_ns()}",
        context_id=run_id,
        task_id=run_id,
        role=Role.ROLE_AGENT,
        parts=[Part(text=text)],
    )


def _update(record: RunRecord, note: str | None = None, state: int | None = None) -> TaskStatusUpdateEvent:
    status = TaskStatus(state=_STATES[record.status] if state is None else state)  # type: ignore[arg-type]
    text = note if note is not None else _status_text(record)
    if text:
        status.message.CopyFrom(_agent_message(record.run_id, text))
    return TaskStatusUpdateEvent(task_id=record.run_id, context_id=record.run_id, status=status)


class RunTasks(RequestHandler):
    """A2A over the server's runtime: ``runtime`` (its worker executes the runs), ``store`` (the
    registered agents), ``authorizer`` (each call's permission on the agent's team)."""

    def __init__(
        self,
        *,
        runtime: Runtime,
        store: ControlStore,
        authorizer: Authorizer | None,
        timeout: float = 600.0,
    ) -> None:
        self.runtime = runtime
        self.store = store
        self._authorizer = authorizer
        self._timeout = timeout

    # who and which agent ------------------------------------------------------------------------
    async def agent(self, name: str) -> AgentRecord:
        return await asyncio.to_thread(self.store.agent, name)

    async def team(self, agent: AgentRecord) -> str | None:
        try:
            loaded = await asyncio.to_thread(self.runtime.services.load_spec, agent.spec_path)
        except (ShopfloorError, OSError):
            return None
        return loaded.spec.permissions.team

    async def _context(self, context: ServerCallContext, permission: str) -> tuple[Principal, AgentRecord]:
        principal = context.state.get(PRINCIPAL_KEY)
        name = context.state.get(AGENT_KEY)
        if not isinstance(principal, Principal) or not isinstance(name, str):
            raise InvalidRequestError(message="the request reached the A2A handler without its principal")
        try:
            agent = await self.agent(name)
        except AgentNotFoundError as exc:
            raise InvalidParamsError(message=str(exc)) from None
        if self._authorizer is not None:
            team = await self.team(agent)
            resource = Resource(kind="runs", name=agent.name, team=team or principal.team)
            try:
                self._authorizer.authorize(principal, permission, resource)
            except PermissionDeniedError as exc:
                raise InvalidRequestError(message=str(exc)) from None
        return principal, agent

    async def _run(self, context: ServerCallContext, task_id: str, permission: str) -> RunRecord:
        _, agent = await self._context(context, permission)
        try:
            record = await self.runtime.get_run(task_id)
        except RunNotFoundError:
            raise TaskNotFoundError(message=f"no task {task_id!r}") from None
        if record.agent != agent.name or record.run_id != task_id:
            raise TaskNotFoundError(message=f"no task {task_id!r} of agent {agent.name!r}")
        return record

    # tasks ----------------------------------------------------------------------------------------
    async def on_get_task(self, params: GetTaskRequest, context: ServerCallContext) -> Task | None:
        return task_of(await self._run(context, params.id, "runs:read"))

    async def on_list_tasks(self, params: ListTasksRequest, context: ServerCallContext) -> ListTasksResponse:
        _, agent = await self._context(context, "runs:read")
        size = min(params.page_size or 50, _MAX_PAGE)
        before = None
        if params.page_token:
            stamp, _, run_id = params.page_token.partition(":")
            try:
                before = (float(stamp), run_id)
            except ValueError:
                raise InvalidParamsError(message="page_token: not a token this server gave") from None
        records = await self.runtime.list_runs(limit=size + 1, agent=agent.name, before=before)
        page = records[:size]
        response = ListTasksResponse(tasks=[task_of(r) for r in page], page_size=size, total_size=len(page))
        if len(records) > size:
            response.next_page_token = f"{page[-1].created_at!r}:{page[-1].run_id}"
        return response

    async def on_cancel_task(self, params: CancelTaskRequest, context: ServerCallContext) -> Task | None:
        record = await self._run(context, params.id, "runs:cancel")
        principal = context.state[PRINCIPAL_KEY]
        try:
            await self.runtime.cancel(record.run_id, by=principal.id)
        except RunStateError as exc:
            raise TaskNotCancelableError(message=str(exc)) from None
        return task_of(await self.runtime.get_run(record.run_id))

    async def _start(self, params: SendMessageRequest, context: ServerCallContext) -> str:
        principal, agent = await self._context(context, "runs:start")
        if params.message.task_id:
            raise InvalidParamsError(
                message=f"task {params.message.task_id} cannot take another message: a task is one run "
                "(an approval is decided with POST /v1/runs/ID/approve)"
            )
        text = "\n".join(part.text for part in params.message.parts if part.text)
        if not text.strip():
            raise InvalidParamsError(message="message.parts: the agent takes a text part, its task")
        # Started by the agent's name: its deployment picks the release (and canary track) for the caller.
        return await self.runtime.start_run(
            agent.spec_path, text, detach=True, caller=principal.id, agent=agent.name, principal=principal
        )

    async def on_message_send(self, params: SendMessageRequest, context: ServerCallContext) -> Task | Message:
        run_id = await self._start(params, context)
        if params.configuration.return_immediately:
            return task_of(await self.runtime.get_run(run_id))
        try:
            async with asyncio.timeout(self._timeout):
                async for _ in self._follow(run_id):
                    pass
        except TimeoutError:
            pass  # the task as it stands: the client goes on with GetTask or SubscribeToTask
        return task_of(await self.runtime.get_run(run_id))

    async def on_message_send_stream(
        self, params: SendMessageRequest, context: ServerCallContext
    ) -> AsyncGenerator[Event]:
        run_id = await self._start(params, context)
        yield task_of(await self.runtime.get_run(run_id))
        async for event in self._follow(run_id):
            yield event

    async def on_subscribe_to_task(
        self, params: SubscribeToTaskRequest, context: ServerCallContext
    ) -> AsyncGenerator[Event]:
        record = await self._run(context, params.id, "runs:read")
        if record.status in _STOPPED:
            raise UnsupportedOperationError(message=f"task {record.run_id} has stopped ({record.status})")
        yield task_of(record)
        async for event in self._follow(record.run_id):
            yield event

    async def _follow(self, run_id: str) -> AsyncGenerator[TaskStatusUpdateEvent]:
        """Status updates while the run goes on (each event of the run as a working update), the last
        one when it ended or stopped for an approval."""
        seq = -1
        poll = self.runtime.settings.runtime.poll_interval
        while True:
            record = await self.runtime.get_run(run_id)
            async for stored in self.runtime.events(run_id, after=seq, follow=False):
                seq = stored.seq  # every event is reported, also those read after the run ended
                yield _update(record, note=f"step: {stored.event.kind}", state=TaskState.TASK_STATE_WORKING)
            if record.status in _STOPPED:
                yield _update(record)
                return
            await asyncio.sleep(poll)

    # not offered (the card says so) ---------------------------------------------------------------
    async def on_create_task_push_notification_config(
        self, params: TaskPushNotificationConfig, context: ServerCallContext
    ) -> TaskPushNotificationConfig:
        raise PushNotificationNotSupportedError

    async def on_get_task_push_notification_config(
        self, params: GetTaskPushNotificationConfigRequest, context: ServerCallContext
    ) -> TaskPushNotificationConfig:
        raise PushNotificationNotSupportedError

    async def on_list_task_push_notification_configs(
        self, params: ListTaskPushNotificationConfigsRequest, context: ServerCallContext
    ) -> ListTaskPushNotificationConfigsResponse:
        raise PushNotificationNotSupportedError

    async def on_delete_task_push_notification_config(
        self, params: DeleteTaskPushNotificationConfigRequest, context: ServerCallContext
    ) -> None:
        raise PushNotificationNotSupportedError

    async def on_get_extended_agent_card(
        self, params: GetExtendedAgentCardRequest, context: ServerCallContext
    ) -> AgentCard:
        raise UnsupportedOperationError(message="this server has no extended agent card")
