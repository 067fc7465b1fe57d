"""One process that executes runs: DBOS launched with a unique executor id, a heartbeat, and a sweeper.

Why a heartbeat of our own: DBOS recovers, at launch, the unfinished workflows
of the launching executor's id, which is safe only if no live process shares
that id. So every Shopfloor process gets a unique id, beats a row in the run
store every ``heartbeat`` seconds from a thread (a busy event loop must not look
like a dead process), and workers sweep: an unfinished run whose executor has
been silent for ``executor_timeout`` seconds (or stopped cleanly) is handed back
to a queue, where exactly one live worker picks it up (DBOS's dequeue is
atomic). A worker restarted with its old ``--executor-id`` recovers its own runs
at once through DBOS's launch-time recovery.
"""

from __future__ import annotations

import functools
import logging
import os
import socket
import sys
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

import sqlalchemy as sa
from dbos import DBOS, DBOSConfig, DBOSPortableJSONSerializer
from dbos import error as dbos_error

from shopfloor.config import Settings
from shopfloor.runtime._dbos_internals import reenqueue_for_recovery
from shopfloor.runtime._store import RunStore
from shopfloor.runtime._workflow import CHILD_WORKFLOW_NAME, WORKFLOW_NAME
from shopfloor.storage import open_sqlite

__all__ = [
    "APP_NAME",
    "APP_VERSION",
    "CHILD_QUEUE",
    "RECOVERY_QUEUE",
    "RUN_QUEUE",
    "Supervisor",
    "configure_dbos_logging",
    "dbos_config",
    "new_executor_id",
]

APP_NAME = "shopfloor"
#: The workflow's code version: DBOS recovers a workflow only on the version it started on.
#: Bump it when the sequence of steps a run records changes incompatibly.
APP_VERSION = "shopfloor-runtime-1"
#: Detached runs, partitioned by agent (per-agent concurrency and rate limits).
RUN_QUEUE = "shopfloor-runs"
#: Runs that were started in a process that died (``shopfloor run`` without --detach).
RECOVERY_QUEUE = "shopfloor-recovered"
#: Child runs whose executor died: apart from the parents waiting for them, which hold the slots of
#: the other queues.
CHILD_QUEUE = "shopfloor-children"

log = logging.getLogger("shopfloor.runtime")


class QuietCancellations(logging.Filter):
    """DBOS logs a cancelled workflow as an error and a warning; for a run that is a cancel, not a failure."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if isinstance(exc, dbos_error.DBOSAwaitedWorkflowCancelledError):
            return False
        message = record.getMessage()
        # Runtime.close() stops the runs still executing here on purpose (they resume elsewhere).
        return "was cancelled during execution" not in message and "Asyncio task cancelled" not in message


_quiet = QuietCancellations()


class _CurrentStderr(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to ``sys.stderr`` as it is when a record comes, not as it was when DBOS launched."""

    @property
    def stream(self) -> Any:
        return sys.stderr

    @stream.setter
    def stream(self, value: Any) -> None:
        pass


def configure_dbos_logging() -> None:
    """DBOS's records go to the current ``sys.stderr`` (DBOS's own console handler keeps the stream
    it found at launch, closed by then in tests); cancelled runs are not logged as errors."""
    dbos_logger = logging.getLogger("dbos")
    if not any(isinstance(handler, _CurrentStderr) for handler in dbos_logger.handlers):
        handler = _CurrentStderr()
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        dbos_logger.addHandler(handler)
    dbos_logger.propagate = False
    if _quiet not in dbos_logger.filters:
        dbos_logger.addFilter(_quiet)


def new_executor_id(role: str) -> str:
    return f"{role}-{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"


def dbos_config(settings: Settings, executor_id: str) -> DBOSConfig:
    config: DBOSConfig = {
        "name": APP_NAME,
        "system_database_url": settings.db_url,
        "application_version": APP_VERSION,
        "executor_id": executor_id,
        "log_level": "WARNING",
        # Step results are plain JSON: store them as JSON (smaller than pickle, readable by any client).
        "serializer": DBOSPortableJSONSerializer(),
        "notification_listener_polling_interval_sec": settings.runtime.message_poll,
        "scheduler_polling_interval_sec": 60.0,
    }
    url = sa.make_url(settings.db_url)
    if url.get_backend_name() == "sqlite" and url.database:
        # DBOS never sets the journal mode (its default is the rollback journal, ~10x the cost of a
        # WAL commit here), and its pool pre-ping is a round trip per checkout to a local file that
        # cannot drop the connection. DBOS still adds its IMMEDIATE, busy timeout and foreign keys.
        config["db_engine_kwargs"] = {
            "pool_pre_ping": False,
            "creator": functools.partial(open_sqlite, url.database),
        }
    return config


def client_kwargs(settings: Settings) -> dict[str, Any]:
    return {
        "system_database_url": settings.db_url,
        "serializer": DBOSPortableJSONSerializer(),
        "application_name": APP_NAME,
    }


class Supervisor(threading.Thread):
    """Heartbeat of this executor and, in workers, the sweep that recovers runs of dead executors."""

    def __init__(
        self,
        store: RunStore,
        settings: Settings,
        *,
        executor_id: str,
        role: str,
        sweep: bool,
        on_ended: Callable[[str], None] | None = None,
    ) -> None:
        super().__init__(name=f"shopfloor-supervisor-{executor_id}", daemon=True)
        self.store = store
        #: told the id of each run the sweep recorded the end of (its concurrent-run slots go back)
        self.on_ended = on_ended
        self.executor_id = executor_id
        self.role = role
        self.sweeping = sweep
        self.interval = settings.runtime.heartbeat
        self.timeout = settings.runtime.executor_timeout
        self.recovered: list[str] = []
        self._stop_event = threading.Event()

    def beat(self) -> None:
        self.store.heartbeat(self.executor_id, role=self.role, pid=os.getpid(), host=socket.gethostname())

    def run(self) -> None:
        while not self._stop_event.wait(self.interval):
            try:
                self.beat()
                if self.sweeping:
                    self.sweep()
            except Exception:  # a failed beat or sweep is retried next interval; the database may be busy
                log.warning("executor heartbeat/sweep failed; retrying", exc_info=True)

    def sweep(self) -> list[str]:
        """Hand the unfinished runs of silent executors back to a queue; returns their ids."""
        live = self.store.live_executors(timeout=self.timeout) | {self.executor_id}
        pending = DBOS.list_workflows(
            status="PENDING", name=[WORKFLOW_NAME, CHILD_WORKFLOW_NAME], load_input=False, load_output=False
        )
        recovered = []
        for workflow in pending:
            dead = workflow.executor_id
            if dead is None or dead in live:
                continue
            # Queued runs keep their queue (and agent partition); runs started directly go to RECOVERY_QUEUE,
            # child runs to CHILD_QUEUE.
            queue = CHILD_QUEUE if workflow.name == CHILD_WORKFLOW_NAME else RECOVERY_QUEUE
            if reenqueue_for_recovery(workflow.workflow_id, [dead], queue):
                log.warning("recovering run %s of silent executor %s", workflow.workflow_id, dead)
                recovered.append(workflow.workflow_id)
        self.recovered += recovered
        self._settle_cancelled(live)
        return recovered

    def _settle_cancelled(self, live: set[str]) -> None:
        """A run cancelled while its executor was dead never runs again, so nothing else would
        record its end: do it here."""
        open_runs = {r.run_id: r for r in self.store.unfinished() if r.executor_id not in live}
        if not open_runs:
            return
        cancelled = DBOS.list_workflows(
            workflow_ids=list(open_runs), status="CANCELLED", load_input=False, load_output=False
        )
        for workflow in cancelled:
            self.store.update(
                workflow.workflow_id,
                unless_terminal=True,
                status="cancelled",
                stop_reason="cancelled",
                error="cancelled by request",
                approval=None,
                finished_at=time.time(),
            )
            if self.on_ended is not None:
                self.on_ended(workflow.workflow_id)

    def stop(self) -> None:
        self._stop_event.set()
        if self.is_alive():
            self.join(timeout=5)
        # A clean stop marks the executor dead at once, so its unfinished runs recover without waiting.
        self.store.stop_executor(self.executor_id)
