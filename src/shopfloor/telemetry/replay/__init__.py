"""Replay of recorded runs: feed a run's recorded step outputs back through the agent loop.

``ReplayStepRunner(recorded)`` is a ``StepRunner`` that returns the recorded
outputs and calls nothing; ``replay_run`` reports whether every step and the
answer came out the same, naming the first step that differs; ``fork_run``
replays up to a step and continues live, possibly with another agent version.
Records come from ``Runtime.recorded_steps`` (DBOS), from the local trace store
(``recorded_from_spans``), or from ``RecordingStepRunner`` in tests.

This package imports the agent layer, so ``shopfloor.telemetry`` does not import it.
"""

from shopfloor.telemetry.replay._replay import ReplayReport, StepCheck, fork_index, fork_run, replay_run
from shopfloor.telemetry.replay._runner import (
    APPROVAL,
    Recorded,
    RecordingStepRunner,
    ReplayStepRunner,
    as_recorded,
)
from shopfloor.telemetry.replay._spans import RunInfo, recorded_from_spans, run_info_from_spans

__all__ = [
    "APPROVAL",
    "Recorded",
    "RecordingStepRunner",
    "ReplayReport",
    "ReplayStepRunner",
    "RunInfo",
    "StepCheck",
    "as_recorded",
    "fork_index",
    "fork_run",
    "recorded_from_spans",
    "replay_run",
    "run_info_from_spans",
]
