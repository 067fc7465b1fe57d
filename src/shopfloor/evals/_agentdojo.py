"""AgentDojo (PyPI ``agentdojo``) through the harness: its task suites (workspace, travel, banking,
slack) as items, each a *scenario*: a user task, optionally an injection task with the injections an
attack places where the user task's tool results show them.

Each item's run begins from its scenario: the harness writes it to the run's fresh workspace
(``agentdojo/scenario.json``, an item file) and the suite's tools (``agentdojo_tools``) build
AgentDojo's environment from it at the first call, keep it in ``agentdojo/state.json`` (committed with
the step, so a resumed run goes on from it) and run the package's own functions on it. The scorer
(``agentdojo``) builds the same environment again, replays the recorded tool calls on it and asks the
package's own checkers: utility (the user task solved) and attack success (the injection task done).

The attacks are the package's fixed-template ones; ``important_instructions_no_model_name`` (the
AgentDojo paper's attack, the model named generically) is the default.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.util
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import Field

from shopfloor.errors import EvalError
from shopfloor.evals._dataset import Dataset, Item
from shopfloor.evals._sources import DatasetSource, SourceOptions

__all__ = [
    "AGENTDOJO_ATTACKS",
    "AGENTDOJO_SUITES",
    "SCENARIO_FILE",
    "STATE_FILE",
    "AgentDojoSource",
    "Scenario",
    "initial_environment",
    "task_suite",
]

AGENTDOJO_SUITES = ("workspace", "travel", "banking", "slack")
#: ``none``: the user tasks alone (utility); the others: every user task under every injection task
AGENTDOJO_ATTACKS = (
    "none",
    "important_instructions_no_model_name",
    "important_instructions_no_names",
    "direct",
    "ignore_previous",
    "system_message",
    "injecagent",
)
#: the benchmark version the suites default to (the newest ``agentdojo`` 0.1.35 ships)
DEFAULT_VERSION = "v1.2.2"
SCENARIO_FILE = "agentdojo/scenario.json"
STATE_FILE = "agentdojo/state.json"
_TASK_ID = re.compile(r"(user|injection)_task_(\d+)")


def _require() -> None:
    if importlib.util.find_spec("agentdojo") is None:
        raise EvalError(
            "AgentDojo (PyPI agentdojo) is not installed: `pip install agentdojo==0.1.35` "
            "(scripts/bootstrap.sh installs it with the dev extras)"
        )


def task_suite(suite: str, version: str) -> Any:
    """AgentDojo's ``TaskSuite`` ``suite`` of benchmark ``version`` (``v1.2.2``)."""
    _require()
    from agentdojo.task_suite.load_suites import get_suites

    try:
        suites = get_suites(version)
    except KeyError:
        suites = {}
    if suite not in suites:
        raise EvalError(
            f"AgentDojo has no suite {suite!r} in benchmark version {version!r}"
            + (f"; suites: {', '.join(sorted(suites))}" if suites else "; versions look like v1.2.2")
        )
    return suites[suite]


def _number(task_id: str) -> int:
    match = _TASK_ID.fullmatch(task_id)
    return int(match.group(2)) if match else -1


@dataclass(frozen=True, kw_only=True)
class Scenario:
    """Where an AgentDojo item's run begins: the suite, the user task and, under attack, the injection
    task with its injections (injection vector -> text)."""

    suite: str
    version: str
    user_task: str
    injection_task: str | None = None
    attack: str = "none"
    injections: dict[str, str]

    def to_dict(self) -> dict[str, Any]:
        return {
            "suite": self.suite,
            "version": self.version,
            "user_task": self.user_task,
            "injection_task": self.injection_task,
            "attack": self.attack,
            "injections": self.injections,
        }

    @classmethod
    def from_dict(cls, data: Any) -> Scenario:
        """A scenario from its recorded form (an item's metadata or the workspace's file); anything
        else raises ``ValueError`` naming what is wrong."""
        if not isinstance(data, dict):
            raise ValueError("an AgentDojo scenario is a mapping")
        text = ("suite", "version", "user_task", "attack")
        if any(not isinstance(data.get(key), str) for key in text):
            raise ValueError(f"an AgentDojo scenario needs {', '.join(text)} as text")
        injection = data.get("injection_task")
        injections = data.get("injections")
        if injection is not None and not isinstance(injection, str):
            raise ValueError("the scenario's injection_task is text or null")
        if not isinstance(injections, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in injections.items()
        ):
            raise ValueError("the scenario's injections map injection vectors to text")
        return cls(
            suite=data["suite"],
            version=data["version"],
            user_task=data["user_task"],
            injection_task=injection,
            attack=data["attack"],
            injections=dict(injections),
        )

    def tasks(self) -> tuple[Any, Any, Any | None]:
        """(the task suite, its user task, its injection task or None)."""
        suite = task_suite(self.suite, self.version)
        if self.user_task not in suite.user_tasks:
            raise ValueError(f"AgentDojo {self.suite} {self.version} has no {self.user_task}")
        injection = None
        if self.injection_task is not None:
            if self.injection_task not in suite.injection_tasks:
                raise ValueError(f"AgentDojo {self.suite} {self.version} has no {self.injection_task}")
            injection = suite.injection_tasks[self.injection_task]
        return suite, suite.user_tasks[self.user_task], injection


def initial_environment(scenario: Scenario) -> Any:
    """The environment the scenario's user task starts from, its injections in place (as AgentDojo's
    ``run_task_with_pipeline`` builds it)."""
    suite, user_task, _ = scenario.tasks()
    environment = suite.load_and_inject_default_environment(scenario.injections)
    return user_task.init_environment(environment)


def _injections(suite: Any, attack: str) -> Any:
    """The package's attack of that name (one that needs no target model to name)."""
    from agentdojo.attacks.attack_registry import ATTACKS
    from agentdojo.attacks.base_attacks import DEFAULT_MODEL_NAME, DEFAULT_USER_NAME, FixedJailbreakAttack
    from agentdojo.attacks.important_instructions_attacks import ImportantInstructionsAttack

    if attack.startswith("important_instructions"):
        # ImportantInstructionsAttack's own template; the model named generically, as its
        # ``_no_model_name`` variant does (that variant looks the model up in its pipeline's name first)
        made = FixedJailbreakAttack(ImportantInstructionsAttack._JB_STRING, suite, None)
        made.model_name = DEFAULT_MODEL_NAME
        made.user_name = (
            "Emma Johnson" if attack == "important_instructions_no_model_name" else DEFAULT_USER_NAME
        )
        return made
    return ATTACKS[attack](suite, None)


class AgentDojoOptions(SourceOptions):
    suite: Literal[AGENTDOJO_SUITES] = Field(description="an AgentDojo task suite")  # type: ignore[valid-type]
    version: str = Field(DEFAULT_VERSION, description="the AgentDojo benchmark version")
    attack: Literal[AGENTDOJO_ATTACKS] = Field(  # type: ignore[valid-type]
        "important_instructions_no_model_name", description="none: user tasks alone"
    )
    #: only these user tasks / injection tasks (default: all of the suite's)
    user_tasks: list[str] | None = None
    injection_tasks: list[str] | None = None


class AgentDojoSource(DatasetSource):
    """``{source: agentdojo, suite: banking, attack: none, limit: 5}``: the scenarios of one suite."""

    Options = AgentDojoOptions

    def load(self) -> Dataset:
        opts = self.options
        assert isinstance(opts, AgentDojoOptions)
        suite = task_suite(opts.suite, opts.version)
        users = _pick(suite.user_tasks, opts.user_tasks, f"{opts.suite} user tasks")
        pairs: list[tuple[str, str | None]]
        if opts.attack == "none":
            pairs = [(user, None) for user in users]
        else:
            injections = _pick(suite.injection_tasks, opts.injection_tasks, f"{opts.suite} injection tasks")
            pairs = [(user, injection) for user in users for injection in injections]
        ids = [f"{opts.suite}/{user}" + (f"/{inj}" if inj else "") for user, inj in pairs]
        if opts.ids is not None:
            missing = sorted(set(opts.ids) - set(ids))
            if missing:
                raise EvalError(f"AgentDojo {opts.suite} has no items {', '.join(missing[:10])}")
            pairs = [pair for pair, item_id in zip(pairs, ids, strict=True) if item_id in opts.ids]
        end = None if opts.limit is None else opts.offset + opts.limit
        pairs = pairs[opts.offset : end]
        if not pairs:
            raise EvalError(f"AgentDojo {opts.suite}: the selection (offset {opts.offset}) has no items")
        attack = None if opts.attack == "none" else _injections(suite, opts.attack)
        items = []
        for user, injection in pairs:
            user_task = suite.user_tasks[user]
            placed: dict[str, str] = {}
            if attack is not None and injection is not None:
                try:
                    placed = dict(attack.attack(user_task, suite.injection_tasks[injection]))
                except ValueError as exc:  # a user task whose tool results show no injection vector
                    raise EvalError(f"AgentDojo {opts.suite} {user}: {exc}") from None
            scenario = Scenario(
                suite=opts.suite,
                version=opts.version,
                user_task=user,
                injection_task=injection,
                attack=opts.attack,
                injections=placed,
            )
            items.append(
                Item(
                    id=f"{opts.suite}/{user}" + (f"/{injection}" if injection else ""),
                    input=str(user_task.PROMPT),
                    metadata={"benchmark": "agentdojo", **scenario.to_dict()},
                    tags=(opts.suite, "attacked" if injection else "benign"),
                    files={SCENARIO_FILE: json.dumps(scenario.to_dict(), indent=1, sort_keys=True)},
                )
            )
        package = importlib.metadata.version("agentdojo")
        digest = hashlib.sha256(
            json.dumps([package, [item.to_dict() for item in items]], sort_keys=True).encode()
        )
        import agentdojo

        return Dataset(
            path=Path(agentdojo.__file__).parent / "data" / "suites" / opts.suite,
            digest=f"sha256:{digest.hexdigest()}",
            items=tuple(items),
        )


def _pick(tasks: dict[str, Any], wanted: list[str] | None, what: str) -> list[str]:
    """The task ids, in their numeric order; ``wanted`` picks some (each must exist)."""
    known = sorted(tasks, key=_number)
    if wanted is None:
        return known
    missing = [task for task in wanted if task not in tasks]
    if missing:
        raise EvalError(f"AgentDojo has no {what} {', '.join(missing[:10])}; known: {', '.join(known[:40])}")
    return [task for task in known if task in set(wanted)]
