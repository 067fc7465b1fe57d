"""Replaying or forking one recorded run with its own agent and environment: what ``shopfloor replay``
and the console's replay and fork buttons do."""

from __future__ import annotations

import asyncio
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from shopfloor.errors import RunNotFoundError
from shopfloor.ops.replay._load import load_record
from shopfloor.ops.replay._replay import ReplayReport, fork_run, replay_run
from shopfloor.ops.replay._spans import RunInfo
from shopfloor.runtime import RunRecord, Runtime, Services, open_environment

__all__ = ["Replayed", "fork_record", "replay_recorded"]


@dataclass(frozen=True, kw_only=True)
class Replayed:
    info: RunInfo
    report: ReplayReport
    #: the digest of the agent replayed where it is not the run's (its files changed since the run)
    changed: str | None = None
    #: when the replay or fork started (seconds since the epoch)
    started_at: float = 0.0


async def replay_recorded(
    services: Services,
    run_id: str,
    *,
    at: str | None = None,
    agent: Path | None = None,
    runtime: Runtime | None = None,
) -> Replayed:
    """Replay run ``run_id`` (or a prefix of it) on its recorded step outputs, nothing called; with
    ``at`` (a step number or name), replay up to that step and run live from it as a new run
    ``RUN-fork-XXXXXXXX`` (its spans go to the telemetry active in the caller's context). ``agent``:
    another version of the agent (its spec), else the run's own. ``ValueError`` names a step ``at`` that
    the record lacks."""
    started_at = time.time()
    info, recorded = await load_record(services, run_id, runtime=runtime)
    spec = agent or (Path(info.spec_path) if info.spec_path else None)
    if spec is None:
        raise RunNotFoundError(f"run {info.run_id} has no recorded agent spec: pass another agent's spec")
    if info.task is None:
        raise RunNotFoundError(f"run {info.run_id}: its task was not recorded (telemetry.store_content off)")
    loaded = await asyncio.to_thread(services.load_spec, spec)
    changed = loaded.digest if agent is None and info.digest and loaded.digest != info.digest else None
    # The run's own environment (workspace, skills): the replayed loop must offer the same tools; a
    # replay calls none of them, a fork calls them from its fork point on.
    fork_id = f"{info.run_id}-fork-{uuid.uuid4().hex[:8]}"
    env = await open_environment(
        loaded, services, run_id=info.run_id if at is None else fork_id, model=info.model
    )
    try:
        if at is None:
            report = await replay_run(
                env.loop, info.task, recorded, run_id=info.run_id, expected_output=info.output
            )
        else:
            report = await fork_run(env.loop, info.task, recorded, at=at, run_id=fork_id)
    finally:
        await env.close()
    return Replayed(info=info, report=report, changed=changed, started_at=started_at)


def fork_record(replayed: Replayed, *, caller: str, spec_path: str) -> RunRecord | None:
    """The ended fork as a run of the run store (its outcome, tokens and steps; None for a replay or a
    fork that diverged before its fork point): what lists it beside the run it was forked from. It
    ran in the caller's process, not as a durable workflow: it has no recorded steps of its own."""
    report, info = replayed.report, replayed.info
    result = report.result
    if report.forked_at is None or result is None:
        return None
    return RunRecord(
        run_id=report.run_id,
        agent=info.agent or "",
        spec_path=spec_path,
        release_digest=replayed.changed or info.digest or "",
        caller=caller,
        status=result.status,
        task=info.task or "",
        model=info.model,
        output=result.output,
        stop_reason=result.stop_reason,
        error=result.error,
        input_tokens=result.usage.input_tokens,
        output_tokens=result.usage.output_tokens,
        model_calls=result.usage.model_calls,
        steps=len(result.steps),
        created_at=replayed.started_at,
        started_at=replayed.started_at,
        finished_at=time.time(),
    )
