"""Run an evaluation: every (item, repeat) a durable run of the agent in a fresh workspace, scored
from what the run recorded, with the results kept in the database so that a killed evaluation resumes.

The runs are ordinary Shopfloor runs (``shopfloor runs ls`` lists them), executed in this process
under an executor id kept with the evaluation, each with an id derived from the evaluation, the item
and the repeat (``item_run_id``): resuming relaunches that executor, so DBOS recovers the runs the dead
process left unfinished from their last recorded step, and reads every unfinished item's run by its
id in one query, so an item whose run had ended is scored from its record, never run again, whether
or not its result had been written. Results are written in batches (``ResultWriter``).

Per item the harness adds to its run only what scoring needs (issue 18: at most 5% over running the
runs directly): the run is launched from the agent spec loaded once (``Runtime.launch``), its end
awaited from its workflow (no polling), its record and events read in one query each, and its result
written with others'.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Literal

from shopfloor.errors import EvalError, RunStateError
from shopfloor.evals._case import build_case
from shopfloor.evals._dataset import Item, load_datasets
from shopfloor.evals._results import ResultWriter
from shopfloor.evals._scorer import Case, Metric, Scorer, ScorerEnv
from shopfloor.evals._sources import load_source
from shopfloor.evals._stats import summarise
from shopfloor.evals._store import EvalItemRow, EvalRecord, EvalStore, ItemResult, item_run_id
from shopfloor.evals._suite import LoadedSuite, build_scorers
from shopfloor.runtime import (
    RunRecord,
    Runtime,
    Services,
    needs_workspace,
    new_executor_id,
    workspace_name,
)
from shopfloor.spec import LoadedSpec
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
            unfinished = [row for row in rows if not row.finished]
            # The runs the items have already (a resumed evaluation's), read together by their ids.
            existing = await runtime.get_runs([_run_id(row) for row in unfinished])
            # Relaunching the evaluation's executor recovers the runs a killed evaluation left.
            await runtime.start_executor(executor_id=record.executor_id)
            done = len(rows) - len(unfinished)
            total = len(rows)
            semaphore = asyncio.Semaphore(int(record.config.get("concurrency") or 1))
            evals = self.settings.evals
            results = ResultWriter(self.store, every=evals.write_every, batch=evals.write_batch)
            runner = _ItemRunner(runtime, record, scorers, results)

            async def one(row: EvalItemRow) -> None:
                nonlocal done
                async with semaphore:
                    finished = await runner.run(row, existing.get(_run_id(row)))
                done += 1
                if progress is not None:
                    progress(finished, done, total)

            # The evaluation's span goes to the runtime's telemetry, its item runs' spans under it.
            telemetry = runtime.telemetry
            active = telemetry.activate() if telemetry is not None else contextlib.nullcontext()
            try:
                with active, span(f"eval {record.suite}", attributes={"shopfloor.eval.id": record.eval_id}):
                    async with asyncio.TaskGroup() as group:
                        for row in unfinished:
                            group.create_task(one(row))
            finally:
                await results.close()  # what was scored is written, even when interrupted
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
        rescored: list[ItemResult] = []
        for row in await asyncio.to_thread(self.store.items, record.eval_id):
            if row.case is None:
                continue
            recorded = {m["name"]: m.get("detail") or {} for m in row.metrics}
            case = Case.from_dict(_item(row.item), row.case, recorded)
            metrics, problems = await score_case(case, built)
            status, reason = _verdict(case, problems)
            rescored.append(
                ItemResult(
                    eval_id=row.eval_id,
                    item_id=row.item_id,
                    repeat=row.repeat,
                    status=status,
                    reason=reason,
                    run_id=row.run_id,
                    case=row.case,
                    metrics=[m.to_dict() for m in metrics],
                    finished_at=row.finished_at,
                )
            )
        await asyncio.to_thread(self.store.write_results, rescored)
        if scorers is not None:
            await asyncio.to_thread(
                self.store.update, record.eval_id, config={**record.config, "scorers": configs}
            )
        return await self.finish(record.eval_id)


def _item(data: dict[str, Any]) -> Item:
    return Item(**{**data, "tags": tuple(data.get("tags") or ())})


def _run_id(row: EvalItemRow) -> str:
    """The item's run: the one its row names (an evaluation begun before run ids were derived), else
    the one derived from it."""
    return row.run_id or item_run_id(row.eval_id, row.item_id, row.repeat)


def _verdict(case: Case, problems: list[str]) -> tuple[Literal["done", "broken"], str | None]:
    reasons = []
    if case.status != "completed":
        reasons.append(f"run {case.status} ({case.stop_reason}): {case.error or ''}".rstrip(": "))
    reasons += problems
    return ("broken", "; ".join(reasons)) if reasons else ("done", None)


class _ItemRunner:
    def __init__(
        self, runtime: Runtime, record: EvalRecord, scorers: list[Scorer], results: ResultWriter
    ) -> None:
        self.runtime = runtime
        self.record = record
        self.scorers = scorers
        self.results = results
        self.timeout = record.config.get("timeout")
        self.spans = any(s.type == "operational" for s in scorers)
        self._agent: asyncio.Task[LoadedSpec] | None = None

    async def agent(self) -> LoadedSpec:
        """The agent's spec, loaded once for every item (an error in it breaks each item that runs)."""
        if self._agent is None:
            self._agent = asyncio.ensure_future(
                asyncio.to_thread(self.runtime.services.load_spec, self.record.agent_path)
            )
        return await asyncio.shield(self._agent)

    async def run(self, row: EvalItemRow, existing: RunRecord | None) -> EvalItemRow:
        """Run the item (or follow its run, ``existing``, begun before a resume), score it, queue its
        result and return its row as that result makes it."""
        item = _item(row.item)
        run_id: str | None = existing.run_id if existing is not None else None
        timed_out = False
        try:
            ended: Awaitable[object] | None = None  # None: the run has ended already
            if existing is None:
                loaded = await self.agent()
                chosen = _run_id(row)
                if item.files:
                    await self.seed(item, loaded, chosen)
                launched = await self.runtime.launch(
                    loaded, item.input, model=self.record.model, run_id=chosen
                )
                run_id, ended = launched.run_id, launched.ended()
            elif not existing.done:
                relaunched = await self.runtime.relaunch(existing.run_id)
                ended = relaunched.ended() if relaunched is not None else self.runtime.wait(existing.run_id)
            assert run_id is not None
            if ended is not None:
                try:
                    async with asyncio.timeout(self.timeout):
                        await ended
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
        result = ItemResult(
            eval_id=row.eval_id,
            item_id=row.item_id,
            repeat=row.repeat,
            status=status,
            reason=reason,
            run_id=run_id,
            case=case.to_dict(),
            metrics=[m.to_dict() for m in metrics],
            finished_at=time.time(),
        )
        self.results.add(result)
        return replace(
            row,
            status=status,
            reason=reason,
            run_id=run_id,
            case=result.case,
            metrics=result.metrics,
            finished_at=result.finished_at,
        )

    async def seed(self, item: Item, loaded: LoadedSpec, run_id: str) -> None:
        """Commit the item's files to the run's own workspace (``run-<id>``) before the run starts; the
        agent's seed files are added beside them when it does. Seeding again (a resumed evaluation
        whose process died before the run started) commits the same files again."""
        spec = loaded.spec
        if spec.permissions.workspace == "none" or not needs_workspace(spec):
            raise EvalError(
                f"item {item.id} has files for its run's workspace, but agent {spec.name!r} has none: "
                "give it one (`workspace: {seed: [...]}`) or leave `files` out of the item"
            )
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


def build_harness(services: Services) -> Harness:
    """The harness of a process, from its composed services (``compose(settings)``)."""
    return Harness(services)
