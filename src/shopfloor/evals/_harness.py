"""Run an evaluation: every (item, repeat) a durable run of the agent in a fresh workspace, scored
from what the run recorded, with the results kept in the database so that a killed evaluation resumes.

The runs are ordinary Shopfloor runs (``shopfloor runs ls`` lists them), executed in this process
under an executor id kept with the evaluation: resuming relaunches that executor, so DBOS recovers
the runs the dead process left unfinished from their last recorded step, and an item whose run had
ended is scored from its record, never run again.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from shopfloor.errors import EvalError, RunStateError
from shopfloor.evals._case import build_case
from shopfloor.evals._dataset import Item, load_datasets
from shopfloor.evals._scorer import Case, Metric, Scorer, ScorerEnv
from shopfloor.evals._sources import load_source
from shopfloor.evals._stats import summarise
from shopfloor.evals._store import EvalItemRow, EvalRecord, EvalStore
from shopfloor.evals._suite import LoadedSuite, build_scorers
from shopfloor.runtime import Runtime, Services, needs_workspace, new_executor_id, workspace_name
from shopfloor.telemetry import span
from shopfloor.workspace import Quota

__all__ = ["EvalOptions", "Harness", "ProgressFn", "build_harness", "score_case"]

ProgressFn = Callable[[EvalItemRow, int, int], None]


@dataclass(frozen=True, kw_only=True)
class EvalOptions:
    """What the command line may override in a suite."""

    agent: Path | None = None
    model: str | None = None
    repeat: int | None = None
    concurrency: int | None = None
    tags: tuple[str, ...] = ()
    timeout: float | None = None


async def score_case(case: Case, scorers: Sequence[Scorer]) -> tuple[list[Metric], list[str]]:
    """Every scorer's metrics; a scorer that raises gives its metric no value and a reason."""
    metrics: list[Metric] = []
    problems: list[str] = []
    for scorer in scorers:
        try:
            metrics += await scorer.score(case)
        except Exception as exc:  # a scorer's bug or bad data: recorded against this item, never fatal
            reason = f"scorer {scorer.name}: {type(exc).__name__}: {exc}"
            problems.append(reason)
            metrics.append(Metric(name=scorer.name, value=None, passed=None, detail={"error": reason}))
    return metrics, problems


class Harness:
    """Runs, resumes and re-scores evaluations with ``services`` (from ``compose``)."""

    def __init__(self, services: Services, store: EvalStore | None = None) -> None:
        self.services = services.with_own_workspaces()
        self.settings = services.settings
        self.settings.ensure_home()
        self.store = store or EvalStore.open(self.settings.db_url)

    def close(self) -> None:
        self.store.close()

    def env(self, base_dir: Path) -> ScorerEnv:
        return ScorerEnv(base_dir=base_dir, settings=self.settings, models=self.services.models)

    # starting -------------------------------------------------------------------------------
    async def create(self, suite: LoadedSuite, options: EvalOptions = EvalOptions()) -> EvalRecord:
        """Record a new evaluation of ``suite`` (every item and repeat pending) and return it."""
        spec = suite.spec
        build_scorers(suite.scorer_configs, self.env(suite.base_dir))
        items, dataset_digest = await asyncio.to_thread(
            load_datasets, suite.datasets(), source=functools.partial(load_source, settings=self.settings)
        )
        tags = set(options.tags or spec.tags)
        if tags:
            items = [item for item in items if tags & set(item.tags)]
            if not items:
                raise EvalError(f"no item of the suite's datasets has a tag of {', '.join(sorted(tags))}")
        agent_path = options.agent or suite.agent_path()
        if agent_path is None:
            raise EvalError(f"suite {suite.path} names no agent: add `agent:` or pass --agent DIR")
        loaded = await asyncio.to_thread(self.services.load_spec, agent_path)
        repeat = options.repeat or spec.repeat
        record = EvalRecord(
            eval_id=uuid.uuid4().hex,
            suite=spec.name,
            suite_path=str(suite.path),
            suite_digest=suite.digest,
            dataset_digest=dataset_digest,
            agent=loaded.spec.name,
            agent_path=str(loaded.path),
            agent_digest=loaded.digest,
            model=options.model or spec.model,
            repeat=repeat,
            executor_id=new_executor_id("eval"),
            status="running",
            config={
                "scorers": list(suite.scorer_configs),
                "gates": [gate.model_dump() for gate in spec.gates],
                "concurrency": options.concurrency or spec.concurrency,
                "timeout": options.timeout or spec.timeout,
                "tags": sorted(tags),
                "base_dir": str(suite.base_dir),
            },
            created_at=time.time(),
        )
        rows = [(item.id, rep, item.to_dict()) for rep in range(repeat) for item in items]
        await asyncio.to_thread(self.store.create, record, rows)
        return record

    async def run(
        self, suite: LoadedSuite, options: EvalOptions = EvalOptions(), *, progress: ProgressFn | None = None
    ) -> EvalRecord:
        record = await self.create(suite, options)
        return await self.execute(record.eval_id, progress=progress)

    # executing ------------------------------------------------------------------------------
    async def execute(self, eval_id: str, *, progress: ProgressFn | None = None) -> EvalRecord:
        """Run (or resume) every unfinished item of the evaluation, then summarise it."""
        record = await asyncio.to_thread(self.store.find, eval_id)
        rows = await asyncio.to_thread(self.store.items, record.eval_id)
        scorers = build_scorers(record.config["scorers"], self.env(Path(record.config["base_dir"])))
        if all(row.finished for row in rows):
            return await self.finish(record.eval_id)
        runtime = Runtime(self.services)
        try:
            live = await asyncio.to_thread(
                runtime.store.live_executors, timeout=self.settings.runtime.executor_timeout
            )
            if (
                record.executor_id in live
                and record.status == "running"
                and any(not r.finished for r in rows)
            ):
                raise EvalError(
                    f"evaluation {record.eval_id} is still running (executor {record.executor_id} is alive); "
                    "wait for it, or resume it once that process has stopped"
                )
            # Relaunching the evaluation's executor recovers the runs a killed evaluation left.
            await runtime.start_executor(executor_id=record.executor_id)
            done = sum(1 for r in rows if r.finished)
            total = len(rows)
            semaphore = asyncio.Semaphore(int(record.config.get("concurrency") or 1))
            runner = _ItemRunner(runtime, record, scorers, self.store)

            async def one(row: EvalItemRow) -> None:
                nonlocal done
                async with semaphore:
                    finished = await runner.run(row)
                done += 1
                if progress is not None:
                    progress(finished, done, total)

            # The evaluation's span goes to the runtime's telemetry, its item runs' spans under it.
            telemetry = runtime.telemetry
            active = telemetry.activate() if telemetry is not None else contextlib.nullcontext()
            with active, span(f"eval {record.suite}", attributes={"shopfloor.eval.id": record.eval_id}):
                async with asyncio.TaskGroup() as group:
                    for row in rows:
                        if not row.finished:
                            group.create_task(one(row))
        finally:
            await runtime.close()
        return await self.finish(record.eval_id)

    async def finish(self, eval_id: str) -> EvalRecord:
        record = await asyncio.to_thread(self.store.find, eval_id)
        rows = await asyncio.to_thread(self.store.items, record.eval_id)
        summary = summarise(rows, record.config.get("gates") or [])
        status = "completed" if all(r.finished for r in rows) else "running"
        await asyncio.to_thread(
            self.store.update, record.eval_id, status=status, summary=summary, finished_at=time.time()
        )
        return await asyncio.to_thread(self.store.find, record.eval_id)

    async def rescore(self, eval_id: str, *, scorers: list[dict[str, Any]] | None = None) -> EvalRecord:
        """Score every finished item again from its recorded case (no run, no model call; a judge's
        recorded reply is reused); ``scorers`` replaces the evaluation's own."""
        record = await asyncio.to_thread(self.store.find, eval_id)
        configs = scorers if scorers is not None else record.config["scorers"]
        built = build_scorers(configs, self.env(Path(record.config["base_dir"])))
        for row in await asyncio.to_thread(self.store.items, record.eval_id):
            if row.case is None:
                continue
            recorded = {m["name"]: m.get("detail") or {} for m in row.metrics}
            case = Case.from_dict(_item(row.item), row.case, recorded)
            metrics, problems = await score_case(case, built)
            status, reason = _verdict(case, problems)
            await asyncio.to_thread(
                self.store.update_item,
                row.eval_id,
                row.item_id,
                row.repeat,
                status=status,
                reason=reason,
                metrics=[m.to_dict() for m in metrics],
            )
        if scorers is not None:
            await asyncio.to_thread(
                self.store.update, record.eval_id, config={**record.config, "scorers": configs}
            )
        return await self.finish(record.eval_id)


def _item(data: dict[str, Any]) -> Item:
    return Item(**{**data, "tags": tuple(data.get("tags") or ())})


def _verdict(case: Case, problems: list[str]) -> tuple[str, str | None]:
    reasons = []
    if case.status != "completed":
        reasons.append(f"run {case.status} ({case.stop_reason}): {case.error or ''}".rstrip(": "))
    reasons += problems
    return ("broken", "; ".join(reasons)) if reasons else ("done", None)


class _ItemRunner:
    def __init__(self, runtime: Runtime, record: EvalRecord, scorers: list[Scorer], store: EvalStore) -> None:
        self.runtime = runtime
        self.record = record
        self.scorers = scorers
        self.store = store
        self.timeout = record.config.get("timeout")
        self.spans = any(s.type == "operational" for s in scorers)

    async def run(self, row: EvalItemRow) -> EvalItemRow:
        item = _item(row.item)
        run_id = row.run_id
        timed_out = False
        try:
            if run_id is None:
                chosen = await self.seed(item) if item.files else None
                run_id = await self.runtime.start_run(
                    self.record.agent_path, item.input, model=self.record.model, run_id=chosen
                )
                await asyncio.to_thread(
                    self.store.update_item,
                    row.eval_id,
                    row.item_id,
                    row.repeat,
                    status="running",
                    run_id=run_id,
                )
            try:
                async with asyncio.timeout(self.timeout):
                    await self.runtime.wait(run_id)
            except TimeoutError:
                timed_out = True
                with contextlib.suppress(RunStateError):
                    await self.runtime.cancel(run_id, by="eval timeout")
            case = await build_case(self.runtime, item, run_id, spans=self.spans)
        except Exception as exc:  # starting or reading the run failed: this item is broken, the rest go on
            case = Case(
                item=item,
                run_id=run_id,
                status="failed",
                stop_reason="error",
                error=f"{type(exc).__name__}: {exc}",
            )
        if timed_out:
            case = replace(
                case, status="failed", stop_reason="timeout", error=f"timed out after {self.timeout} s"
            )
        metrics, problems = await score_case(case, self.scorers)
        status, reason = _verdict(case, problems)
        values: dict[str, Any] = {
            "status": status,
            "reason": reason,
            "run_id": run_id,
            "case": case.to_dict(),
            "metrics": [m.to_dict() for m in metrics],
            "finished_at": time.time(),
        }
        await asyncio.to_thread(self.store.update_item, row.eval_id, row.item_id, row.repeat, **values)
        return replace(row, **{**values, "case": case.to_dict(), "metrics": values["metrics"]})

    async def seed(self, item: Item) -> str:
        """A new run id whose own workspace (``run-<id>``) already holds the item's files, committed
        before the run starts; the agent's seed files are added beside them when it does."""
        loaded = await asyncio.to_thread(self.runtime.services.load_spec, self.record.agent_path)
        spec = loaded.spec
        if spec.permissions.workspace == "none" or not needs_workspace(spec):
            raise EvalError(
                f"item {item.id} has files for its run's workspace, but agent {spec.name!r} has none: "
                "give it one (`workspace: {seed: [...]}`) or leave `files` out of the item"
            )
        run_id = uuid.uuid4().hex
        workspaces = await asyncio.to_thread(self.runtime.services.workspaces)
        try:
            workspace = workspaces.workspace(
                workspace_name(loaded, run_id), quota=Quota.from_spec(spec.workspace)
            )
            view = await workspace.open("main")
            for path, text in sorted(item.files.items()):
                await view.write(path, text)
            await view.commit(f"item {item.id}: {len(item.files)} files", run_id=run_id, step=0)
        finally:
            await asyncio.to_thread(workspaces.close)
        return run_id


def build_harness(services: Services) -> Harness:
    """The harness of a process, from its composed services (``compose(settings)``)."""
    return Harness(services)
