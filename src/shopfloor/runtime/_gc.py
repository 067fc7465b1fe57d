"""How CPython's cyclic garbage collector runs in a process while it executes runs.

Measured on the throughput benchmark (200 runs of 10 iterations at once, one process, SQLite): with the
interpreter's thresholds (700, 10, 10) the collector took 0.63-0.94 s of a 2.5-3.3 s measurement, a
quarter of the loop thread's CPU, in ~250 young, ~23 middle and 2 full collections a measurement; a full
collection walks every object the process holds (~210,000 after start-up: modules, classes, functions,
the composed services) and paused the loop for up to 0.27 s. A run's steps allocate objects that die
young (dicts, futures, frames of finished coroutines), so collecting the young generation every 700 net
allocations finds little and costs a walk each time; and the long-lived start-up objects are walked
again by every full collection without ever being garbage.

While a runtime executes runs here (``Runtime.start_executor`` to ``close``), ``GCTuning``:

- raises the young generation's threshold to ``[runtime] gc_threshold`` (default 20,000: 5 collections
  a measurement, 0.06-0.08 s in all, the longest pause 0.03 s; cyclic garbage then waits for at most
  that many allocations, a few MB); 0 leaves the interpreter's thresholds as they are;
- with ``[runtime] gc_freeze`` (default on), moves what the process holds at that moment into the
  collector's permanent generation (``gc.freeze``), once per process (where nothing is frozen yet, so an
  application that froze its own objects before keeps its choice): a full collection then walks only
  what was made since (0.04 s after 200 runs against 0.12-0.71 s). What is frozen is never collected:
  it is what lives as long as the process (the garbage at that moment, 40 objects at a CLI's start,
  stays too), so freezing is done once and never undone.

Closing puts the previous thresholds back unless something else changed them since (another runtime in
the same process, the application). Thresholds are the process's: two runtimes open at once share them,
and the first to close puts the previous ones back, which costs the other speed, never correctness.
"""

from __future__ import annotations

import gc

__all__ = ["GCTuning"]


class GCTuning:
    """The collector's settings for a process executing runs, applied and put back (see the module)."""

    def __init__(self, threshold: int, *, freeze: bool) -> None:
        if threshold < 0:
            raise ValueError(f"a garbage collection threshold is >= 0, not {threshold}")
        self.threshold = threshold
        self.freeze = freeze
        #: the thresholds found when applied, put back by ``restore``; None: not applied
        self._previous: tuple[int, int, int] | None = None
        #: whether ``apply`` froze the process's objects (done once a process: see the module)
        self.froze = False

    def apply(self) -> None:
        if self.freeze and gc.get_freeze_count() == 0:
            gc.freeze()
            self.froze = True
        if self.threshold and self._previous is None:
            self._previous = previous = gc.get_threshold()
            gc.set_threshold(self.threshold, *previous[1:])

    def restore(self) -> None:
        previous, self._previous = self._previous, None
        if previous is not None and gc.get_threshold()[0] == self.threshold:
            gc.set_threshold(*previous)
