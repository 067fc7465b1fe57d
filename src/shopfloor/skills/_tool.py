"""A skill as a tool: the model sees its name and description; the body only once it chooses it.

The workspace is a ``WorkspaceView`` (materialised for the call; the changes become the next
commit of its ref) or a directory ``Path`` used as it is; without one the skill gets an empty,
throw-away ``/workspace``. The run's ``ToolServices`` (workspace, tenant, sandbox) take
precedence over the constructor's values.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from shopfloor._registry import Registry
from shopfloor.config import Settings
from shopfloor.errors import SkillFormatError, ToolExecutionError, WorkspaceError
from shopfloor.sandbox import Sandbox, SandboxPolicy
from shopfloor.skills._deps import SkillEnvironment, prepare_environment
from shopfloor.skills._execute import SkillRun, run_entry_point
from shopfloor.skills._plan import SchemaPlan, parse_plan
from shopfloor.skills._skill import Skill
from shopfloor.tools import Tool, ToolContext

if TYPE_CHECKING:
    from shopfloor.workspace import WorkspaceView

__all__ = ["SkillReferenceTool", "SkillTool"]

logger = logging.getLogger("shopfloor.skills")
_NO_ARGS: dict[str, Any] = {"type": "object", "properties": {}, "additionalProperties": False}


class SkillTool(Tool):
    def __init__(
        self,
        skill: Skill,
        *,
        settings: Settings,
        policy: SandboxPolicy | None = None,
        workspace: WorkspaceView | Path | None = None,
        sandbox: Sandbox | None = None,
        tenant: str = "default",
        requires_approval: bool = False,
        approval_timeout: float | None = None,
        environment: SkillEnvironment | None = None,
        backends: Registry[type[Sandbox]] | None = None,
    ) -> None:
        self.skill = skill
        # Prepared (and checked against its lock) once per tool, that is once per run.
        self.environment = environment
        self.settings = settings
        self.policy = policy or SandboxPolicy()
        self.workspace = workspace
        self.sandbox = sandbox
        #: the sandbox backends to choose from (the built-in ones by default)
        self.backends = backends
        self.tenant = tenant
        self.name = skill.name
        # Progressive disclosure: only the front-matter description until the model picks the skill.
        self.description = skill.description
        self.input_schema = skill.input_schema if skill.executable else _NO_ARGS
        self.output_schema = skill.output_schema
        self.requires_approval = requires_approval
        self.approval_timeout = approval_timeout
        #: the current decision's schemas, from its stage-0 run (None: none, or the skill does not plan)
        self._plan: SchemaPlan | None = None

    async def details(self) -> str:
        """The SKILL.md body, and the reference files the model may ask to read."""
        references = self.skill.references()
        listing = (
            "\n\nReference files (ask to read one by path): " + ", ".join(references) if references else ""
        )
        return self.skill.body + listing

    async def next_schema(
        self, chosen: dict[str, Any], stage: int, *, task: str = ""
    ) -> dict[str, Any] | None:
        """A staged skill derives each stage's schema from the workspace (say, the chosen file's columns)
        and the task (say, only the filter values the task names); one that plans answers all the
        stages of a decision in its stage-0 run (``SchemaPlan``), and later stages read that plan."""
        if self.skill.config is None or not self.skill.config.staged:
            return await super().next_schema(chosen, stage, task=task)
        if stage == 0:
            self._plan = None  # a decision starts here, and the workspace may have changed since the last
        elif self._plan is not None and self._plan.task == task:
            found, schema = self._plan.lookup(stage, chosen)
            if found:
                return schema
        ctx = ToolContext(run_id="schema", step=stage, call_id="schema", idempotency_key="schema")
        request = {"stage": stage, "chosen": chosen, "task": task}
        # At stage 0 ask for every stage at once (a skill that cannot plan answers stage 0 alone).
        run = await self.execute({**request, "plan": True} if stage == 0 else request, ctx, mode="schema")
        plan = parse_plan(run.output, task) if run.error is None and stage == 0 else None
        if isinstance(plan, str):
            logger.warning("skill %s: ignoring its schema plan: %s", self.name, plan)
            run = await self.execute(request, ctx, mode="schema")
        elif plan is not None:
            self._plan = plan
            found, schema = plan.lookup(stage, chosen)
            if found:
                return schema
            run = await self.execute(request, ctx, mode="schema")
        if run.error is None and (run.output is None or isinstance(run.output, dict)):
            return run.output
        # Asking for everything at once still works; only the narrowing is lost.
        logger.warning("skill %s: staged schema failed, asking for all arguments: %s", self.name, run.error)
        return self.input_schema if stage == 0 else None

    async def read_reference(self, path: str) -> str:
        return await asyncio.to_thread(self.skill.read_reference, path)

    async def call(self, args: dict[str, Any], ctx: ToolContext) -> Any:
        args = self.validate(args)
        if not self.skill.executable:
            # An instructions-only skill: choosing it is reading it.
            return {"instructions": self.skill.body, "references": self.skill.references()}
        run = await self.execute(args, ctx)
        if run.error is not None:
            raise ToolExecutionError(run.error)
        return run.output

    async def execute(self, args: dict[str, Any], ctx: ToolContext, *, mode: str | None = None) -> SkillRun:
        """Run the entry point against the workspace; commit the changes when it succeeds."""
        services = ctx.services
        if self.environment is None:
            self.environment = await prepare_environment(self.skill, self.settings)
        env = self.environment
        workspace = services.workspace if services.workspace is not None else self.workspace
        config = self.skill.config
        assert config is not None
        writes = mode is None and config.sandbox.workspace == "read-write"

        # resolved at call time, never stored with the skill: a rotated secret is used at the next call
        secret_env = await asyncio.to_thread(services.secrets) if services.secrets is not None else {}

        async def run_in(directory: Path) -> SkillRun:
            return await run_entry_point(
                self.skill,
                args,
                env=env,
                workspace=directory,
                policy=self.policy,
                settings=self.settings,
                tenant=services.tenant or self.tenant,
                sandbox=services.sandbox or self.sandbox,
                mode=mode,
                backends=self.backends,
                extra_env=secret_env,
            )

        if isinstance(workspace, Path):
            run = await run_in(workspace)
        else:
            run = await self._in_view(workspace, ctx, run_in, writes=writes)
        if run.killed_by is not None and services.security_event is not None:
            details = {
                "skill": self.name,
                "killed_by": run.killed_by,
                "backend": run.backend,
                "run_id": ctx.run_id,
            }
            await asyncio.to_thread(services.security_event, "sandbox.killed", details)
        logger.info(
            "skill %s exit %s in %.2fs%s",
            self.name,
            run.exit_code,
            run.wall_time,
            f": {run.error.splitlines()[0]}" if run.error else "",
        )
        return run

    async def _in_view(
        self, view: WorkspaceView | None, ctx: ToolContext, run_in: Any, *, writes: bool
    ) -> SkillRun:
        scratch = self.settings.home / "cache" / "skill-runs"
        scratch.mkdir(parents=True, exist_ok=True)
        directory = Path(tempfile.mkdtemp(prefix=f"{self.name}-", dir=scratch))
        try:
            if view is not None:
                # What the file tools wrote before is there too, uncommitted: the capture commits it.
                await view.materialize(directory)
            run: SkillRun = await run_in(directory)
            if view is not None and writes and run.error is None and not view.read_only and view.ref:
                try:
                    # The workspace's quota holds here as for the file tools (checked where it commits).
                    commit = await view.capture(
                        directory, message=f"skill {self.name}", run_id=ctx.run_id, step=ctx.step
                    )
                except WorkspaceError as exc:
                    return dataclasses.replace(
                        run,
                        error=f"skill {self.name} ran, but its changes to the workspace were refused: {exc}",
                    )
                run = dataclasses.replace(run, commit=commit)
            return run
        finally:
            await asyncio.to_thread(shutil.rmtree, directory, True)


class SkillReferenceTool(Tool):
    """Reads a reference file of a granted skill, on demand (the third level of disclosure)."""

    name = "read_skill_reference"

    def __init__(self, tools: list[SkillTool]) -> None:
        self._by_name = {tool.name: tool for tool in tools if tool.skill.references()}
        listing = "; ".join(f"{name}: {', '.join(t.skill.references())}" for name, t in self._by_name.items())
        self.description = f"Read a reference file of a skill. Available: {listing}"
        self.input_schema = {
            "type": "object",
            "properties": {
                "skill": {"enum": sorted(self._by_name)},
                "path": {"type": "string", "description": "a path listed in the skill's instructions"},
            },
            "required": ["skill", "path"],
            "additionalProperties": False,
        }

    async def call(self, args: dict[str, Any], ctx: ToolContext) -> Any:
        args = self.validate(args)
        try:
            return {
                "path": args["path"],
                "text": await self._by_name[args["skill"]].read_reference(args["path"]),
            }
        except SkillFormatError as exc:
            raise ToolExecutionError(str(exc)) from exc
