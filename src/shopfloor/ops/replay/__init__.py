"""Replay of recorded runs: feed a run's recorded step outputs back through the agent loop.

``ReplayStepRunner(recorded)`` is a ``StepRunner`` that returns the recorded
outputs and calls nothing; ``replay_run`` reports whether every step and the
answer came out the same, naming the first step that differs; ``fork_run``
replays up to a step and continues live, possibly with another agent version;
``replay_recorded`` does either to a stored run with its own agent and environment.
Records are lists of the runtime's ``RecordedStep``: ``load_record`` reads one from
``Runtime.recorded_steps`` (DBOS) or from the local trace store
(``recorded_from_spans``); ``RecordingStepRunner`` keeps one in tests.

Replay sits in the ops layer, above the runtime and the agent; telemetry imports neither.
"""

from shopfloor.ops.replay._load import load_record
from shopfloor.ops.replay._replay import ReplayReport, StepCheck, fork_index, fork_run, replay_run
from shopfloor.ops.replay._runner import RecordingStepRunner, ReplayStepRunner, as_recorded
from shopfloor.ops.replay._session import Replayed, replay_recorded
from shopfloor.ops.replay._spans import RunInfo, recorded_from_spans, run_info_from_spans

__all__ = [
    "RecordingStepRunner",
    "ReplayReport",
    "ReplayStepRunner",
    "Replayed",
    "RunInfo",
    "StepCheck",
    "as_recorded",
    "fork_index",
    "fork_run",
    "load_record",
    "recorded_from_spans",
    "replay_recorded",
    "replay_run",
    "run_info_from_spans",
]
