"""Replaying or forking one recorded run with its own agent and environment: what ``shopfloor replay``
and the console's replay button do (the console's and the API's fork is a durable run instead:
``Runtime.fork_run``)."""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass
from pathlib import Path

from shopfloor.errors import RunNotFoundError
from shopfloor.ops.replay._load import load_record
from shopfloor.ops.replay._replay import ReplayReport, fork_run, replay_run
from shopfloor.ops.replay._spans import RunInfo
from shopfloor.runtime import Runtime, Services, open_environment

__all__ = ["Replayed", "replay_recorded"]


@dataclass(frozen=True, kw_only=True)
class Replayed:
    info: RunInfo
    report: ReplayReport
    #: the digest of the agent replayed where it is not the run's (its files changed since the run)
    changed: str | None = None


async def replay_recorded(
    services: Services,
    run_id: str,
    *,
    at: str | None = None,
    agent: Path | None = None,
    runtime: Runtime | None = None,
) -> Replayed:
    """Replay run ``run_id`` (or a prefix of it) on its recorded step outputs, nothing called; with
    ``at`` (a step number or name), replay up to that step and run live from it as a new run whose id
    is the run's, ``-fork-`` and 8 random hex digits (its spans go to the telemetry active in the
    caller's context). ``agent``: another version of the agent (its spec), else the run's own.
    ``ValueError`` names a step ``at`` that the record lacks."""
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
    return Replayed(info=info, report=report, changed=changed)
