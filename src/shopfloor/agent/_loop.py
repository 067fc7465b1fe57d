"""The runtime-driven agent loop.

Each turn: fit the context window, ask the model for an action under a schema
built from the granted tools, validate the arguments (feeding a validation error
back, a bounded number of times), ask for approval where the spec says so, run
the tool, feed the result back. Model calls and tool calls go through the
``StepRunner`` as named steps with JSON results, so the same loop runs in memory,
durably on DBOS, and as a replay of a recorded run.

With an ``Admission`` (the runtime's budgets), each model call is admitted against the budgets of the
run's identity (its agent, the agent's team, the model's route) inside its step, before the model is
asked, and settled with what it used: a replayed step neither asks nor counts again. A refusal ends
the run with ``stop_reason="budget"`` and the limit's name.
"""

from __future__ import annotations

import asyncio
import dataclasses
import inspect
import json
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar

from opentelemetry import trace as otel_trace

from shopfloor._json import JsonText
from shopfloor.agent._children import CallChildren
from shopfloor.agent._context import ContextWindow, Turn
from shopfloor.agent._deadline import StepTimer
from shopfloor.agent._decide import (
    FINAL_ANSWER,
    Action,
    DecideContext,
    DecisionStrategy,
    Invalid,
    strategy_for,
)
from shopfloor.agent._records import (
    ApprovalDecision,
    ApprovalRequest,
    RunEvent,
    RunResult,
    RunStatus,
    StepRecord,
    StopReason,
    TokenTotals,
)
from shopfloor.agent._steps import InMemoryStepRunner, StepRunner
from shopfloor.agent._tracing import chat_span, plan_span, run_span, tool_span
from shopfloor.errors import (
    BudgetExceededError,
    ModelError,
    ProposalEditError,
    ShopfloorError,
    ToolArgumentsError,
    ToolError,
)
from shopfloor.models import Message, Model, ModelRequest, ModelResponse
from shopfloor.security import Admission, Grant, GuardrailResult, Guardrails, Principal, Usage, UsageRequest
from shopfloor.spec import Limits
from shopfloor.telemetry import redact, redact_json, redact_value
from shopfloor.tools import (
    Ask,
    AskModel,
    Budget,
    ChildOutcome,
    Tool,
    ToolContext,
    ToolServices,
    check_edit,
)

__all__ = ["AgentLoop", "EventSink"]

EventSink = Callable[[RunEvent], Awaitable[None] | None]
_Lent = TypeVar("_Lent", ToolContext, ToolServices)
#: Longest tool result, in characters, that goes back into the context.
_MAX_OBSERVATION = 4000
#: ``json.dumps(value, default=str)`` as an encoder made once (``json.dumps`` with an argument makes
#: one each call: two Python calls more); a tool's output is written with it
_TEXT = JsonText(default=str)
#: ``json.dumps(value)``: an action's arguments in its turn's summary
_ARGUMENTS = JsonText()
#: what ``json.JSONEncoder`` writes without a failure whatever the value: ``attempt`` checks no such output
#: (not ``int``: one longer than ``sys.get_int_max_str_digits()`` has no text)
_ALWAYS_JSON = frozenset({str, float, bool, type(None)})


class _OverBudget(Exception):
    """A model call its budgets refused (the recorded message, the same in a replay)."""


class _StepTimeout(Exception):
    pass


@dataclass(kw_only=True)
class _State:
    turns: list[Turn] = field(default_factory=list)
    records: list[StepRecord] = field(default_factory=list)
    usage: TokenTotals = field(default_factory=TokenTotals)
    model_calls: int = 0
    #: times each model and tool step (``step_timeout``), one step after another
    timer: StepTimer = field(default_factory=StepTimer)


def _used_up(limits: Limits, limit: Literal["max_tokens", "wall_time"]) -> str:
    """Why a run stopped at one of its limits (a child run's too: its share of its parent's)."""
    if limit == "max_tokens":
        return f"token budget of {limits.max_tokens} used up"
    return f"wall time of {limits.wall_time:g} s used up"


class AgentLoop:
    def __init__(
        self,
        *,
        model: Model,
        tools: list[Tool],
        instructions: str = "",
        limits: Limits | None = None,
        decision: str = "auto",
        approvers: tuple[str, ...] = (),
        services: ToolServices | None = None,
        name: str = "agent",
        trace_attributes: Mapping[str, Any] | None = None,
        answer: str = "model",
        guardrails: Guardrails | None = None,
        admission: Admission | None = None,
        principal: Principal | None = None,
        models: Callable[[str], Model] | None = None,
    ) -> None:
        self.model = model
        #: makes the model a route names (a reference) for a tool's ``ask_model``; None: only the run's
        self.models = models
        #: the routes' models made so far, by reference (closed with the loop's own, ``aclose``)
        self._routes: dict[str, Model] = {}
        #: budgets each model call is admitted against, as ``principal`` (the agent's identity)
        self.admission = admission
        self.principal = principal or Principal(id=f"agent:{name}", kind="agent", name=name, method="run")
        #: checks on the task (input), the model's actions (output) and tool results, per agent
        self.guardrails = guardrails
        #: "tool_result": a tool result's ``answer`` summary ends the run as the final answer
        self.answer_from_tool = answer == "tool_result"
        self.name = name
        #: extra attributes of the run's ``invoke_agent`` span (agent version, spec path and digest)
        self.trace_attributes = dict(trace_attributes or {})
        self.tools = {tool.name: tool for tool in tools}
        if FINAL_ANSWER in self.tools:
            raise ToolError(f"a tool may not be called {FINAL_ANSWER!r}: that name ends the run")
        self.limits = limits or Limits()  # type: ignore[call-arg]
        self.strategy: DecisionStrategy = strategy_for(decision, native_supported=model.supports_native_tools)
        self.instructions = instructions
        self.approvers = approvers
        self.services = services or ToolServices()
        #: tools the model named that the spec does not grant, not yet reported to the audit hook
        self.refused: list[str] = []

    async def run(
        self, task: str, *, run_id: str, runner: StepRunner | None = None, on_event: EventSink | None = None
    ) -> RunResult:
        return await self._run(task, run_id, runner, on_event, self._turns)

    async def run_call(
        self,
        tool: str,
        params: dict[str, Any],
        *,
        task: str,
        run_id: str,
        runner: StepRunner | None = None,
        on_event: EventSink | None = None,
    ) -> RunResult:
        """A child run (``ToolServices.children``): no model decides; its one step is ``tool``'s
        ``call_child`` with ``params``, the durable step ``tool:1:NAME`` under the run's own span, whose
        JSON result is the run's output. ``task`` is what the run is about, as listed and traced."""

        async def body(
            task: str,
            run_id: str,
            runner: StepRunner,
            state: _State,
            emit: Callable[..., Awaitable[None]],
            finish: Callable[..., RunResult],
        ) -> RunResult:
            chosen = self.tools.get(tool)
            if chosen is None:
                return finish(
                    "tool_error", error=f"a child run of {tool!r}, which agent {self.name!r} does not grant"
                )
            action = Action(
                tool=tool,
                arguments=params,
                call_id=f"child-{run_id[:12]}",
                reply=Message(role="assistant", content=""),
            )
            limits = self.limits
            # A child's limits are its share of what its parent had left (``agent/_children.py``):
            # spent, or run out while it waited in a queue, before it began.
            if state.usage.total >= limits.max_tokens:
                return finish("max_tokens", error=_used_up(limits, "max_tokens"))
            seconds_left = limits.wall_time - runner.elapsed()
            if seconds_left <= 0:
                return finish("wall_time", error=_used_up(limits, "wall_time"))
            await emit("tool_call", 1, tool=tool, call_id=action.call_id, arguments=params)
            ctx = self._tool_context(action, 1, run_id, state)
            timeout = min(limits.step_timeout, seconds_left)
            outcome = await self._tool_step(
                f"tool:1:{tool}",
                chosen,
                action,
                1,
                run_id,
                runner,
                ctx,
                propose=False,
                child=True,
                seconds=timeout,
                state=state,
            )
            record = await self._tool_record(action, 1, outcome, emit)
            state.records.append(record)
            if record.error is not None:
                # Stopped by its limits, it ends as a run stopped by them does.
                if state.usage.total >= limits.max_tokens:
                    return finish("max_tokens", error=_used_up(limits, "max_tokens"))
                if record.error_kind == "timeout" and timeout < limits.step_timeout:
                    return finish("wall_time", error=_used_up(limits, "wall_time"))
                return finish("tool_error", error=record.error)
            return finish("final_answer", output=json.dumps(record.output, default=str))

        return await self._run(task, run_id, runner, on_event, body)

    async def _run(
        self,
        task: str,
        run_id: str,
        runner: StepRunner | None,
        on_event: EventSink | None,
        body: Callable[..., Awaitable[RunResult]],
    ) -> RunResult:
        runner = runner or InMemoryStepRunner()
        state = _State()

        async def emit(kind: Any, step: int, **data: Any) -> None:
            if on_event is not None:
                # Events are stored and shown: secrets in them (a task, a tool error) are redacted.
                redacted, text = redact_json(data)
                maybe = on_event(RunEvent(kind=kind, run_id=run_id, step=step, data=redacted, data_json=text))
                if maybe is not None and inspect.isawaitable(maybe):  # a runtime's sink returns None
                    await maybe

        def finish(reason: StopReason, output: str | None = None, error: str | None = None) -> RunResult:
            status: RunStatus = (
                "completed"
                if reason == "final_answer"
                else "cancelled"
                if reason == "cancelled"
                else "failed"
            )
            return RunResult(
                run_id=run_id,
                status=status,
                stop_reason=reason,
                output=None if output is None else redact(output),
                steps=tuple(state.records),
                usage=state.usage,
                error=None if error is None else redact(error),
            )

        blocked: GuardrailResult | None = None
        if self.guardrails is not None:
            guarded = self.guardrails.apply(task, "input")
            await _record_guardrail(emit, 0, "input", guarded)
            task, blocked = (task, guarded) if guarded.action == "block" else (guarded.text, None)
        with run_span(
            agent=self.name, run_id=run_id, model=self.model, task=task, attributes=self.trace_attributes
        ) as trace:
            if blocked is not None:
                task = ""
            await emit("run_started", 0, task=task, model=self.model.ref, tools=list(self.tools))
            if blocked is not None:
                result = finish("guardrail", error=_blocked_message("the task", blocked))
            else:
                try:
                    result = await body(task, run_id, runner, state, emit, finish)
                finally:
                    state.timer.close()
            trace.finish(result)
        await emit(
            "run_finished",
            len(state.records),
            status=result.status,
            stop_reason=result.stop_reason,
            output=result.output,
            error=result.error,
            usage=result.usage.to_dict(),
        )
        return result

    async def _turns(
        self,
        task: str,
        run_id: str,
        runner: StepRunner,
        state: _State,
        emit: Callable[..., Awaitable[None]],
        finish: Callable[..., RunResult],
    ) -> RunResult:
        limits = self.limits
        system = Message(role="system", content=self.strategy.system_prompt(self.instructions, self.tools))
        task_message = Message(role="user", content=task)
        window = ContextWindow(
            context_length=self.model.context_length,
            reserve=limits.max_output_tokens,
            count=self.model.count_tokens,
        )

        async def call_model(request: ModelRequest) -> ModelResponse:
            state.model_calls += 1
            name = f"model:{state.model_calls}"

            async def do() -> Any:
                try:
                    grant = await self._admit(request)
                except BudgetExceededError as exc:
                    return {"over_budget": str(exc)}  # recorded: a replay ends the same way
                used = Usage()
                try:
                    with chat_span(run_id=run_id, model=self.model, step_name=name, request=request) as chat:
                        with state.timer.after(limits.step_timeout):
                            response = await self.model.request(request)
                        used = Usage(
                            tokens_in=response.usage.input_tokens, tokens_out=response.usage.output_tokens
                        )
                        # Recorded, replayed and fed on redacted: a secret the model wrote (in a
                        # tool's arguments, say) is never stored, and the run sees what a replay sees.
                        return redact_value(chat.response(response))
                finally:
                    if grant is not None:
                        await asyncio.to_thread(grant.settle, used)

            try:
                recorded = await runner.step(name, do)
            except TimeoutError as exc:
                raise _StepTimeout(f"model call took longer than {limits.step_timeout:g} s") from exc
            if "over_budget" in recorded:
                raise _OverBudget(recorded["over_budget"])
            response = ModelResponse.from_dict(recorded)
            state.usage = state.usage.add(response.usage.input_tokens, response.usage.output_tokens)
            return response

        step = 0
        #: the dropped turns last reported by ``context_trimmed``
        reported = 0
        while True:
            if await runner.check_cancelled():
                return finish("cancelled", error="cancelled by request")
            if step >= limits.max_steps:
                return finish("max_steps", error=f"no final answer after {limits.max_steps} steps")
            if runner.elapsed() > limits.wall_time:
                return finish("wall_time", error=_used_up(limits, "wall_time"))
            if state.usage.total >= limits.max_tokens:
                return finish("max_tokens", error=_used_up(limits, "max_tokens"))
            step += 1
            retries: list[Message] = []
            for attempt in range(limits.max_retries + 1):
                fit = window.fit(system, task_message, state.turns)
                dropped = fit.dropped_turns
                # Reported when the window first drops turns, then once it has turned over (as many more
                # dropped as it keeps): a full window drops a turn nearly every step, and an event each
                # (stored, shown) made a long run's steps dearer than a short one's.
                if dropped and (not reported or dropped - reported >= len(state.turns) - dropped):
                    reported = dropped
                    await emit("context_trimmed", step, dropped_turns=dropped, tokens=fit.tokens)
                try:
                    with plan_span(
                        run_id=run_id, step=step, attempt=attempt + 1, strategy=self.strategy.name
                    ):
                        decided = await self.strategy.decide(
                            fit.messages + tuple(retries),
                            self.tools,
                            DecideContext(
                                step=step,
                                max_tokens=limits.max_output_tokens,
                                task=task,
                                call=call_model,
                                record=runner.step,
                                last_answer=_answer_of(state.records),
                            ),
                        )
                except _StepTimeout as exc:
                    return finish("step_timeout", error=str(exc))
                except _OverBudget as exc:
                    return finish("budget", error=str(exc))
                except ModelError as exc:
                    return finish("model_error", error=f"{type(exc).__name__}: {exc}")
                error = self._check(decided, state.records)
                if error is None and isinstance(decided, Action):
                    break
                retries += [
                    decided.reply,
                    Message(role="user", content=f"Error: {error}. Reply again, correctly."),
                ]
                await emit(
                    "invalid_reply", step, attempt=attempt + 1, error=error, reply=decided.reply.content
                )
                await self._report_refused(run_id, step)
            else:
                return finish(
                    "invalid_output", error=f"step {step}: no valid action after {attempt + 1} tries: {error}"
                )
            action = decided
            if self.guardrails is not None:
                arguments, guarded = self.guardrails.apply_value(action.arguments, "output")
                await _record_guardrail(emit, step, "output", guarded)
                if guarded.action == "block":
                    return finish(
                        "guardrail", error=_blocked_message(f"the model's {action.tool} call", guarded)
                    )
                action = dataclasses.replace(action, arguments=arguments)
            await emit(
                "model_reply", step, tool=action.tool, arguments=action.arguments, usage=state.usage.total
            )
            if action.tool == FINAL_ANSWER:
                return finish("final_answer", output=str(action.arguments["answer"]))
            record = await self._act(action, step, run_id, runner, emit, state)
            state.records.append(record)
            if record.error_kind == "proposal_rejected":
                return finish("rejected", error=record.error)
            summary_answer = _answer_of(state.records) if self.answer_from_tool else None
            if summary_answer is not None:
                return finish("final_answer", output=summary_answer)
            content = _TEXT.encode(record.output) if record.error is None else f"ERROR: {record.error}"
            if len(content) > _MAX_OBSERVATION:
                content = (
                    content[:_MAX_OBSERVATION] + f"... [{len(content) - _MAX_OBSERVATION} more characters]"
                )
            summary = (
                f"step {step} {action.tool}({_ARGUMENTS.encode(action.arguments)[:80]}) -> {content[:80]}"
            )
            state.turns.append(
                Turn(messages=(action.reply, self.strategy.observation(action, content)), summary=summary)
            )

    def _check(self, decided: Action | Invalid, records: list[StepRecord]) -> str | None:
        if isinstance(decided, Invalid):
            return decided.error
        if decided.tool == FINAL_ANSWER:
            args = decided.arguments
            ok = isinstance(args, dict) and isinstance(args.get("answer"), str) and args["answer"].strip()
            return None if ok else 'final_answer needs {"answer": "..."} with the answer text'
        last = records[-1] if records else None
        if last is not None and last.tool == decided.tool and last.arguments == decided.arguments:
            outcome = last.error or json.dumps(last.output, default=str)[:300]
            return (
                f"{decided.tool} was just called with these same arguments (result: {outcome}); "
                f"give the {FINAL_ANSWER} or call a tool with other arguments"
            )
        tool = self.tools.get(decided.tool)
        if tool is None:
            self.refused.append(decided.tool)
            return f"unknown tool {decided.tool!r}; the tools are: {', '.join([*self.tools, FINAL_ANSWER])}"
        try:
            tool.validate(decided.arguments)
        except ToolArgumentsError as exc:
            return str(exc)
        return None

    async def _act(
        self,
        action: Action,
        step: int,
        run_id: str,
        runner: StepRunner,
        emit: Callable[..., Awaitable[None]],
        state: _State,
    ) -> StepRecord:
        tool = self.tools[action.tool]
        await emit("tool_call", step, tool=tool.name, call_id=action.call_id, arguments=action.arguments)
        ctx = self._tool_context(action, step, run_id, state)
        proposal: dict[str, Any] | None = None
        editable: dict[str, Any] = {}
        if tool.proposes:
            # What the call will do, decided in a step of its own (recorded: a recovered run shows the
            # person the same plan) and approved before the call does it.
            proposed = await self._tool_step(
                f"tool:{step}:{tool.name}:propose",
                tool,
                action,
                step,
                run_id,
                runner,
                ctx,
                propose=True,
                state=state,
            )
            if "error" in proposed:
                return await self._tool_record(action, step, proposed, emit)
            if proposed["output"] is not None:
                ctx = dataclasses.replace(ctx, proposal=proposed["output"]["data"])
                if proposed["output"]["needs_approval"]:
                    proposal = proposed["output"]["data"]
                    editable = proposed["output"].get("editable") or {}
        if tool.requires_approval or proposal is not None:
            arguments = action.arguments if proposal is None else {**action.arguments, "proposal": proposal}
            request = ApprovalRequest(
                run_id=run_id,
                step=step,
                tool=tool.name,
                arguments=arguments,
                approvers=self.approvers,
                timeout=tool.approval_timeout,
                proposal=proposal,
                editable=editable,
            )
            await emit(
                "approval_requested",
                step,
                tool=tool.name,
                arguments=arguments,
                approvers=list(self.approvers),
                **({"editable": sorted(editable)} if editable else {}),
            )
            decision = await runner.wait_for_approval(request)
            edited, refusal = _edited(proposal, editable, decision)
            await emit(
                "approval_decided",
                step,
                approved=decision.approved and refusal is None,
                by=decision.by,
                reason=decision.reason,
                **({"edit": {"before": proposal, "after": edited}} if edited is not None else {}),
            )
            if refusal is not None:
                kind = "rejected" if proposal is None else "proposal_rejected"
                bad_edit = {"error": refusal, "error_kind": kind, "duration": 0.0}
                return await self._tool_record(action, step, bad_edit, emit)
            if edited is not None:
                # The call does what the approver approved: the proposal as they edited it.
                ctx = dataclasses.replace(ctx, proposal=edited)
            if not decision.approved:
                what = "call" if proposal is None else "proposal"
                why = f"the {what} was rejected by {decision.by or 'an approver'}" + (
                    f": {decision.reason}" if decision.reason else ""
                )
                # A rejected call goes back to the model; a rejected proposal ends the run.
                kind = "rejected" if proposal is None else "proposal_rejected"
                refused: dict[str, Any] = {"error": why, "error_kind": kind, "duration": 0.0}
                return await self._tool_record(action, step, refused, emit)
        outcome = await self._tool_step(
            f"tool:{step}:{tool.name}", tool, action, step, run_id, runner, ctx, propose=False, state=state
        )
        if "guardrail" in outcome:
            verdict = outcome["guardrail"]
            await _record_guardrail(
                emit,
                step,
                "tool_result",
                GuardrailResult(
                    action=verdict["action"],
                    guardrail=verdict["guardrail"],
                    reasons=tuple(verdict["reasons"]),
                    text="",
                ),
            )
        return await self._tool_record(action, step, outcome, emit)

    async def _tool_step(
        self,
        step_name: str,
        tool: Tool,
        action: Action,
        step: int,
        run_id: str,
        runner: StepRunner,
        ctx: ToolContext,
        *,
        propose: bool,
        child: bool = False,
        seconds: float | None = None,
        state: _State,
    ) -> dict[str, Any]:
        """One durable step of a tool call: ``tool.call`` (its result guarded), ``tool.propose``, or a
        child run's ``tool.call_child``; the outcome ``{"output"|"error", "error_kind", "duration"}`` as
        recorded, with ``usage``: what the call spent (its questions to models, the child runs it waited
        for) where it spent anything. The run's usage is what it was before the step plus that recorded
        ``usage``, so a replayed step counts what the call spent, once."""
        timeout = self.limits.step_timeout if seconds is None else seconds
        before = state.usage

        async def do() -> Any:
            lent = self._lend(ctx, runner, state, before)
            with tool_span(
                run_id=run_id,
                tool=tool,
                call_id=action.call_id,
                step=step,
                step_name=step_name,
                arguments=action.arguments,
            ) as trace:
                outcome, text = redact_json(await attempt(lent))
                guarded = outcome if propose else self._guard_result(outcome)
                outcome = trace.outcome(guarded, text if guarded is outcome else None)
            spent = state.usage.since(before)
            return {**outcome, "usage": spent.to_dict()} if spent.model_calls or spent.total else outcome

        async def attempt(ctx: ToolContext) -> dict[str, Any]:
            started = time.perf_counter()
            output: Any
            try:
                with state.timer.after(timeout):
                    if propose:
                        proposed = await tool.propose(action.arguments, ctx)
                        output = None if proposed is None else dataclasses.asdict(proposed)
                    elif child:
                        output = await tool.call_child(action.arguments, ctx)
                    else:
                        output = await tool.call(action.arguments, ctx)
                if type(output) not in _ALWAYS_JSON:
                    _TEXT.encode(output)  # raises where the output cannot be recorded (a cycle, a tuple key)
                return {"output": output, "duration": time.perf_counter() - started}
            except TimeoutError:
                error, kind = f"{tool.name} took longer than {timeout:g} s and was stopped", "timeout"
            except ToolArgumentsError as exc:
                error, kind = str(exc), "arguments"
            except ToolError as exc:
                error, kind = str(exc), "execution"
            except Exception as exc:  # a bug in a tool is reported to the model and recorded, not fatal
                error, kind = f"{tool.name} failed: {type(exc).__name__}: {exc}", "execution"
            return {"error": error, "error_kind": kind, "duration": time.perf_counter() - started}

        outcome: dict[str, Any] = await runner.step(step_name, do, effects=tool.effects)
        state.usage = before.plus(TokenTotals.from_dict(outcome.get("usage")))
        return outcome

    def _lend(self, ctx: ToolContext, runner: StepRunner, state: _State, before: TokenTotals) -> ToolContext:
        """``ctx`` as the call is lent it as its step begins: what is left of the run's limits then
        (``budget``), and the run's children, their spend counted as the call's (``CallChildren``)."""
        limits = self.limits
        budget = Budget(
            tokens_left=max(0, limits.max_tokens - state.usage.total),
            seconds_left=max(0.0, limits.wall_time - runner.elapsed()),
            step_seconds=limits.step_timeout,
        )
        children = ctx.services.children
        if children is not None:

            def add(outcome: ChildOutcome) -> None:
                spent = TokenTotals(
                    input_tokens=outcome.input_tokens,
                    output_tokens=outcome.output_tokens,
                    model_calls=outcome.model_calls,
                )
                state.usage = state.usage.plus(spent)

            children = CallChildren(
                children, budget=budget, spent=lambda: state.usage.total - before.total, add=add
            )
        services = _replaced(ctx.services, budget=budget, children=children)
        return _replaced(ctx, services=services)

    @staticmethod
    async def _tool_record(
        action: Action, step: int, outcome: dict[str, Any], emit: Callable[..., Awaitable[None]]
    ) -> StepRecord:
        record = StepRecord(
            step=step,
            tool=action.tool,
            arguments=action.arguments,
            output=outcome.get("output"),
            error=outcome.get("error"),
            error_kind=outcome.get("error_kind"),
            duration=outcome["duration"],
        )
        await emit(
            "tool_result",
            step,
            tool=action.tool,
            output=record.output,
            error=record.error,
            error_kind=record.error_kind,
            duration=record.duration,
        )
        return record

    def _tool_context(self, action: Action, step: int, run_id: str, state: _State) -> ToolContext:
        """What a tool's call at ``step`` is lent, in a run's turns and in a child run alike: the run's
        model (``ask``) and any model by reference (``ask_model``; their questions numbered together);
        each of its steps adds what is left of the run's limits (``_lend``)."""
        counter = [0]
        return ToolContext(
            run_id=run_id,
            step=step,
            call_id=action.call_id,
            idempotency_key=f"{run_id}:{step}",
            services=_replaced(
                self.services,
                ask=self._asker(run_id, step, state, counter=counter),
                ask_model=self._route_asker(run_id, step, state, counter),
            ),
        )

    def _route_asker(self, run_id: str, step: int, state: _State, counter: list[int]) -> AskModel:
        """Any model by its reference lent to a tool, asked as the run's own is (``_asker``): the same
        spans, token count and budgets. Each route's model is made once per loop and loaded off the loop."""

        async def ask_model(
            route: str, prompt: str, *, schema: dict[str, Any], system: str = "", max_tokens: int = 256
        ) -> str:
            model = await self._route_model(route)
            ask = self._asker(run_id, step, state, model=model, counter=counter)
            return await ask(prompt, schema=schema, system=system, max_tokens=max_tokens)

        return ask_model

    async def _route_model(self, route: str) -> Model:
        if not route or route == self.model.ref:
            return self.model
        model = self._routes.get(route)
        if model is None:
            if self.models is None:
                raise ToolError(f"no model route {route!r} here: this loop asks only {self.model.ref!r}")
            try:
                model = await asyncio.to_thread(self.models, route)
            except ShopfloorError as exc:
                raise ToolError(f"model route {route!r}: {exc}") from None
            await model.aload()
            model = self._routes.setdefault(route, model)
        return model

    async def aclose_routes(self) -> None:
        """Close the models made for tools' routes (the run's own model is its owner's to close)."""
        routes, self._routes = self._routes, {}
        for model in routes.values():
            await model.aclose()

    def _asker(
        self,
        run_id: str,
        step: int,
        state: _State,
        *,
        counter: list[int],
        model: Model | None = None,
    ) -> Ask:
        """The run's model (or ``model``) lent to a tool: each question a ``chat`` span under the tool's
        span, its tokens the run's. The tool's step records the tool's result, so a replay asks nothing
        again. ``counter`` numbers the questions (shared by the asks of one call)."""
        asked = counter
        chosen = model or self.model

        async def ask(prompt: str, *, schema: dict[str, Any], system: str = "", max_tokens: int = 256) -> str:
            if state.usage.total >= self.limits.max_tokens:
                raise ToolError(f"the run's token budget of {self.limits.max_tokens} is used up")
            asked[0] += 1
            head = (Message(role="system", content=system),) if system else ()
            request = ModelRequest(
                messages=(*head, Message(role="user", content=prompt)),
                json_schema=schema,
                max_tokens=max_tokens,
                cache_prefix=len(head),
            )
            name = f"tool:{step}:ask:{asked[0]}"
            try:  # a tool's question counts against the budgets as the run's own model calls do
                grant = await self._admit(request, chosen)
            except BudgetExceededError as exc:
                raise ToolError(str(exc)) from exc
            used = Usage()
            try:
                with chat_span(run_id=run_id, model=chosen, step_name=name, request=request) as chat:
                    response = await chosen.request(request)
                    chat.response(response)
                used = Usage(tokens_in=response.usage.input_tokens, tokens_out=response.usage.output_tokens)
            finally:
                if grant is not None:
                    await asyncio.to_thread(grant.settle, used)
            state.usage = state.usage.add(response.usage.input_tokens, response.usage.output_tokens)
            # as the run's own replies are: a tool keeps, writes or shows what it is told (a report, a span)
            return redact(response.text)

        return ask

    async def _admit(self, request: ModelRequest, model: Model | None = None) -> Grant | None:
        """Admit one model call (to ``model``, the run's by default) against the budgets (None: no
        budgets), or raise ``BudgetExceededError`` naming the limit it would exceed."""
        if self.admission is None:
            return None
        model = model or self.model
        usage = UsageRequest(
            principal=self.principal,
            route=model.ref,
            agent=self.name,
            estimated_tokens=model.count_message_tokens(request.messages) + request.max_tokens,
        )
        return await asyncio.to_thread(self.admission.admit, usage)

    async def _report_refused(self, run_id: str, step: int) -> None:
        """Least privilege: a model output naming a tool the spec does not grant is refused (the model is
        told, as for any invalid reply) and reported to the run's audit hook."""
        refused, self.refused = self.refused, []
        hook = self.services.security_event
        for name in refused if hook is not None else ():
            details = {"tool": name[:200], "run_id": run_id, "step": step}
            await asyncio.to_thread(hook, "tool.refused", details)  # type: ignore[arg-type]

    def _guard_result(self, outcome: dict[str, Any]) -> dict[str, Any]:
        """A tool's outcome through the tool-result guardrails (inside its step: what is recorded, and what a
        replay feeds back, is the guarded outcome)."""
        if self.guardrails is None or "output" not in outcome:
            return outcome
        output, guarded = self.guardrails.apply_value(outcome["output"], "tool_result")
        if guarded.action == "pass":
            return outcome
        verdict = {"action": guarded.action, "guardrail": guarded.guardrail, "reasons": list(guarded.reasons)}
        if guarded.action == "block":
            return {
                "error": _blocked_message("the tool's result", guarded),
                "error_kind": "guardrail",
                "duration": outcome["duration"],
                "guardrail": verdict,
            }
        return {**outcome, "output": output, "guardrail": verdict}


def _blocked_message(what: str, result: GuardrailResult) -> str:
    return f"{what} was blocked by the {result.guardrail} guardrail: {'; '.join(result.reasons)}"


async def _record_guardrail(
    emit: Callable[..., Awaitable[None]], step: int, stage: str, result: GuardrailResult
) -> None:
    """A guardrail that acted: an event of the run and an event on the current span."""
    if result.action == "pass":
        return
    attributes = {
        "stage": stage,
        "action": result.action,
        "guardrail": result.guardrail,
        "reasons": list(result.reasons),
    }
    otel_trace.get_current_span().add_event("guardrail", attributes)
    await emit("guardrail", step, **attributes)


def _answer_of(records: list[StepRecord]) -> str | None:
    """The last step's result summary: a tool's output ``{"answer": "..."}``, if it gave one."""
    if not records or records[-1].error is not None or not isinstance(records[-1].output, dict):
        return None
    answer = records[-1].output.get("answer")
    return answer if isinstance(answer, str) and answer.strip() else None


def _edited(
    proposal: dict[str, Any] | None, editable: dict[str, Any], decision: ApprovalDecision
) -> tuple[dict[str, Any] | None, str | None]:
    """The proposal as the approver edited it (None: unchanged), or why the edit is refused.

    The runtime checked the edit when it was given; it is checked again here because the decision is a
    message any holder of the database could have sent, and the tool must never run an edit it forbids."""
    if decision.proposal is None or not decision.approved:
        return None, None
    if proposal is None:
        return (
            None,
            f"{decision.by or 'the approver'} sent an edited proposal for a call that proposed nothing",
        )
    try:
        edited = check_edit(editable, proposal, decision.proposal)
    except ProposalEditError as exc:
        return None, str(exc)
    return (edited if edited != proposal else None), None


def _replaced(value: _Lent, **changes: Any) -> _Lent:
    """``dataclasses.replace`` for what every tool step lends anew (``ToolContext``, ``ToolServices``):
    their fields are all ``__init__`` fields and all they hold, so one call of the class does it (the
    walk over their fields was ~25 Python calls an iteration)."""
    return type(value)(**{**vars(value), **changes})
