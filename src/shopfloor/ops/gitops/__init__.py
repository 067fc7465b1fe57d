"""GitOps: a git repository declares releases and deployments; the controller reconciles to it.

``GitSource`` mirrors a repository and reads one commit at a time (untrusted: no hooks, no prompts, safe
extraction); ``read_desired`` validates its YAML with file:line errors; ``GitOpsController`` syncs (one
transaction for every deployment change), reports Synced/OutOfSync and Healthy/Progressing/Degraded per
object, heals drift, prunes behind a flag, keeps the history and pins a rollback until git moves on.
"""

from shopfloor.ops.gitops._controller import GitOpsController, ObjectStatus, SyncResult
from shopfloor.ops.gitops._desired import (
    CanaryDecl,
    DeploymentDecl,
    DesiredState,
    ReleaseDecl,
    SkillDecl,
    read_desired,
)
from shopfloor.ops.gitops._repo import Commit, GitSource, shown_url
from shopfloor.ops.gitops._store import GitOpsState, GitOpsStore, SyncRecord

__all__ = [
    "CanaryDecl",
    "Commit",
    "DeploymentDecl",
    "DesiredState",
    "GitOpsController",
    "GitOpsState",
    "GitOpsStore",
    "GitSource",
    "ObjectStatus",
    "ReleaseDecl",
    "SkillDecl",
    "SyncRecord",
    "SyncResult",
    "read_desired",
    "shown_url",
]
