"""``GCTuning``: the collector's threshold while a process executes runs, put back when it closes; what the
process holds frozen once. Freezing is the process's for good, so it is tested in subprocesses."""

from __future__ import annotations

import gc
import subprocess
import sys
import textwrap
from collections.abc import Iterator

import pytest
from runtime_support import AgentDir

from shopfloor.config import Settings
from shopfloor.runtime import Runtime, compose
from shopfloor.runtime._gc import GCTuning


@pytest.fixture
def thresholds() -> Iterator[tuple[int, int, int]]:
    """The interpreter's thresholds, put back after the test whatever it did."""
    before = gc.get_threshold()
    gc.set_threshold(700, 10, 10)
    yield gc.get_threshold()
    gc.set_threshold(*before)


def test_the_young_threshold_is_raised_and_put_back(thresholds: tuple[int, int, int]) -> None:
    gc.set_threshold(700, 11, 12)
    tuning = GCTuning(20_000, freeze=False)
    tuning.apply()
    assert gc.get_threshold() == (20_000, 11, 12)
    tuning.apply()  # applied twice: still one set of thresholds to put back
    tuning.restore()
    assert gc.get_threshold() == (700, 11, 12)
    tuning.restore()
    assert gc.get_threshold() == (700, 11, 12)


def test_a_zero_threshold_leaves_the_interpreters(thresholds: tuple[int, int, int]) -> None:
    tuning = GCTuning(0, freeze=False)
    tuning.apply()
    assert gc.get_threshold() == thresholds
    tuning.restore()
    assert gc.get_threshold() == thresholds


def test_thresholds_changed_by_someone_else_since_are_kept(thresholds: tuple[int, int, int]) -> None:
    tuning = GCTuning(20_000, freeze=False)
    tuning.apply()
    gc.set_threshold(5_000, 10, 10)  # the application's own choice, made while the runtime ran
    tuning.restore()
    assert gc.get_threshold() == (5_000, 10, 10)


def test_a_negative_threshold_is_refused() -> None:
    with pytest.raises(ValueError, match=">= 0"):
        GCTuning(-1, freeze=False)


def _in_subprocess(code: str) -> list[str]:
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.split()


def test_the_process_is_frozen_once_and_collects_what_it_makes_since() -> None:
    out = _in_subprocess(
        """
        import gc
        from shopfloor.runtime._gc import GCTuning

        class Cycle:
            def __init__(self):
                self.me = self

        kept = Cycle()  # alive at the freeze: frozen, as everything the process holds then
        first, second = GCTuning(0, freeze=True), GCTuning(0, freeze=True)
        first.apply()
        frozen = gc.get_freeze_count()
        second.apply()  # frozen already: left as it is
        made = Cycle()  # made since: collected as garbage as ever
        del made
        print(first.froze, second.froze, frozen > 0, gc.get_freeze_count() == frozen, gc.collect() >= 1)
        """
    )
    assert out == ["True", "False", "True", "True", "True"]


def test_an_application_that_froze_its_objects_keeps_its_choice() -> None:
    out = _in_subprocess(
        """
        import gc
        from shopfloor.runtime._gc import GCTuning

        gc.freeze()
        frozen = gc.get_freeze_count()
        tuning = GCTuning(0, freeze=True)
        tuning.apply()
        print(tuning.froze, gc.get_freeze_count() == frozen)
        """
    )
    assert out == ["False", "True"]


@pytest.mark.usefixtures("db_url")
async def test_a_runtime_executing_runs_has_the_settings_threshold_until_it_closes(
    rt_settings: Settings, agent: AgentDir, thresholds: tuple[int, int, int]
) -> None:
    settings = rt_settings.model_copy(
        update={"runtime": rt_settings.runtime.model_copy(update={"gc_threshold": 12_345})}
    )
    async with Runtime(compose(settings)) as runtime:
        assert gc.get_threshold() == thresholds, "nothing changes before runs execute here"
        await runtime.start_executor()
        assert gc.get_threshold() == (12_345, *thresholds[1:])
        record = await runtime.wait(await runtime.start_run(agent.path, "ticks=2"))
        assert record.status == "completed"
    assert gc.get_threshold() == thresholds
