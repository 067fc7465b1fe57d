"""Releases, deployments and feedback: the AgentOps loop of the control plane.

A *release* (``Releases``) is the signed, immutable document of one agent version: its canonical spec,
the sha256 of every file it references, the exact skill versions and digests, the model pins and the
evaluations that had run; its files live in the workspace object store, its document in the database. A
*deployment* (``Deployments``) names the release serving new runs of an agent, with an optional canary
(a sticky percentage of callers on a candidate), promoted or rolled back by ``evaluate`` from the runs'
metrics and feedback. ``DeploymentRouter`` is the ``RunRouter`` entry points hand to ``compose``:
runs started by agent name then start on the release the deployment picks.
"""

from shopfloor.ops.releases._build import SPEC_FILE, ReleaseParts, collect_parts, model_pins, spec_text
from shopfloor.ops.releases._deploy import (
    CANARY_EVALUATOR,
    Decision,
    DeploymentRouter,
    Deployments,
    ReleaseMetrics,
    bucket,
    failed_gates,
    judge,
    release_metrics,
)
from shopfloor.ops.releases._feedback import feedback_items
from shopfloor.ops.releases._release import RELEASE_FORMAT, Release, diff_releases, split_ref
from shopfloor.ops.releases._releases import Releases, check_version
from shopfloor.ops.releases._store import Deployment, DeploymentEvent, Feedback, ReleaseStore, object_key

__all__ = [
    "CANARY_EVALUATOR",
    "RELEASE_FORMAT",
    "SPEC_FILE",
    "Decision",
    "Deployment",
    "DeploymentEvent",
    "DeploymentRouter",
    "Deployments",
    "Feedback",
    "Release",
    "ReleaseMetrics",
    "ReleaseParts",
    "ReleaseStore",
    "Releases",
    "bucket",
    "check_version",
    "collect_parts",
    "diff_releases",
    "failed_gates",
    "feedback_items",
    "judge",
    "model_pins",
    "object_key",
    "release_metrics",
    "spec_text",
    "split_ref",
]
