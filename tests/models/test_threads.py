"""``threads_for``: every core on a quiet machine, only the idle ones beside other work."""

from __future__ import annotations

from pathlib import Path

import pytest

from shopfloor.models._threads import busy_cores, threads_for


@pytest.mark.parametrize(
    ("limit", "cores", "busy", "threads"),
    [(2, 2, 0, 2), (2, 2, 1, 1), (2, 2, 20, 1), (8, 16, 3, 8), (16, 16, 3, 13)],
)
def test_threads_take_the_idle_cores(limit: int, cores: int, busy: int, threads: int) -> None:
    assert threads_for(limit, cores=cores, busy=busy) == threads


def test_busy_cores_reads_the_kernels_runnable_count(tmp_path: Path) -> None:
    stat = tmp_path / "stat"
    stat.write_text("cpu  1 2 3\nprocs_running 5\nprocs_blocked 0\n")
    assert busy_cores(stat) == 4  # the reader is one of them
    stat.write_text("cpu  1 2 3\n")
    assert busy_cores(stat) is None
    assert busy_cores(tmp_path / "absent") is None


def test_busy_cores_on_this_machine_is_a_count() -> None:
    busy = busy_cores()
    assert busy is None or busy >= 0
