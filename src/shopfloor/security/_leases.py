"""The heartbeat of a process's concurrent-run slots: ``LeaseRenewer`` renews the lease of every slot
the process holds, in one round trip of its ``CounterStore`` every third of the lease.

A slot is held with a short lease (``[security] slot_lease_seconds``) rather than until its run ends,
so the slots of a process that dies without giving them back (kill -9, a lost machine) are free for
anyone once the lease lapses, as leases are in Kubernetes, Temporal and DBOS. One renewer a process,
owned by the ``Budgets`` that owns the store: a thread (the budgets are called from threads and from
the event loop alike), started when the first run is held and stopped at ``stop``.
"""

from __future__ import annotations

import logging
import threading
import time

from shopfloor.security._counters import CounterStore

__all__ = ["LeaseRenewer"]

_log = logging.getLogger(__name__)


class LeaseRenewer:
    """Renews the slots of the holders (run ids) this process holds, until each is dropped."""

    def __init__(self, store: CounterStore, lease: float) -> None:
        self.store = store
        self.lease = lease
        self._holders: set[str] = set()
        self._lock = threading.Lock()
        #: held while a renewal is in flight: ``drop`` waits for it, so a renewal that began before a
        #: run was handed to the queue cannot shorten the queue's hold afterwards
        self._renewing = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        #: renewals that failed (the store was unreachable); each is tried again a third of a lease later
        self.failures = 0

    @property
    def holders(self) -> frozenset[str]:
        with self._lock:
            return frozenset(self._holders)

    def start(self) -> None:
        """Start renewing (once; a stopped renewer does not start again)."""
        with self._lock:
            if self._thread is not None or self._stop.is_set():
                return
            self._thread = threading.Thread(target=self._run, name="slot-lease-renewer", daemon=True)
            self._thread.start()

    def hold(self, holder: str) -> None:
        """Renew ``holder``'s slots from now on (its run is alive in this process); call it once they
        exist, or a renewal before may find none and drop it."""
        with self._lock:
            self._holders.add(holder)

    def drop(self, holder: str) -> None:
        """Renew ``holder``'s slots no more (its run ended here, or went to the queue); returns once no
        renewal that may include it is in flight."""
        with self._renewing, self._lock:
            self._holders.discard(holder)

    def renew(self) -> None:
        """Renew every held slot now: one call of the store. A holder found holding no slot (its run
        was released by whoever saw it end, another executor after a recovery; or it took none) is
        renewed no more."""
        with self._renewing:
            holders = sorted(self.holders)
            if holders:
                found = self.store.renew(holders, time.time() + self.lease)
                with self._lock:
                    self._holders.difference_update(set(holders) - found)

    def _run(self) -> None:
        while not self._stop.wait(self.lease / 3):
            try:
                self.renew()
            except Exception as exc:  # the store is down: keep the thread, try again next interval
                self.failures += 1
                _log.warning(
                    "renewing the leases of %d concurrent-run slot holders failed (%s); retrying in %.1f s",
                    len(self.holders),
                    type(exc).__name__,
                    self.lease / 3,
                )

    def stop(self) -> None:
        """Stop renewing: the slots still held lapse a lease from their last renewal."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
