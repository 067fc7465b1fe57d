"""How many threads a local generation runs on: ``threads_for``.

llama.cpp's threads meet at a barrier after every operation of every layer, and wait there by
spinning. Where other processes keep the cores busy, a thread that is descheduled holds up the
others, which spin through their time slices: measured on a 2-core machine at load 20, a short
constrained reply took 29-60 s and 6-12 s of CPU on 2 threads, and 6 s and 1.1 s on one. So a
generation (``threads`` unset) takes the cores that are idle when it starts: every core of a quiet
machine, one where all the others are taken. The kernel's count of runnable tasks
(``procs_running``) is read a few times and the lowest kept, so a passing blip does not count.
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["busy_cores", "threads_for"]

_STAT = Path("/proc/stat")
_SAMPLES = 3


def busy_cores(stat: Path = _STAT) -> int | None:
    """Tasks other than the caller that are running or ready to run now; None where unknown."""
    seen = []
    for _ in range(_SAMPLES):
        try:
            text = stat.read_text()
        except OSError:
            return None
        for line in text.splitlines():
            if line.startswith("procs_running "):
                seen.append(int(line.split()[1]))
                break
        else:
            return None
    return max(0, min(seen) - 1)  # the caller itself is running


def threads_for(limit: int, *, cores: int | None = None, busy: int | None = None) -> int:
    """Threads for a generation now: at most ``limit``, no more than the idle cores, at least one."""
    cores = cores or len(os.sched_getaffinity(0))
    busy = busy_cores() if busy is None else busy
    if busy is None:
        return limit
    return max(1, min(limit, cores - busy))
