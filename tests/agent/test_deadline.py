"""``StepTimer`` behaves as ``asyncio.timeout`` for blocks timed one after another, on one handle."""

from __future__ import annotations

import asyncio
import time

import pytest

from shopfloor.agent._deadline import StepTimer


def _armed(loop: asyncio.AbstractEventLoop) -> int:
    """The loop's scheduled timers that are not cancelled."""
    return sum(1 for handle in loop._scheduled if not handle.cancelled())  # type: ignore[attr-defined]


async def test_a_block_past_its_deadline_raises_timeout_error_as_asyncio_timeout_does() -> None:
    timer = StepTimer()
    with pytest.raises(TimeoutError) as raised, timer.after(0.02):
        await asyncio.sleep(1)
    assert isinstance(raised.value.__cause__, asyncio.CancelledError)
    # The task is no longer cancelling: it goes on as after ``asyncio.timeout``.
    task = asyncio.current_task()
    assert task is not None and task.cancelling() == 0
    await asyncio.sleep(0)


async def test_a_block_within_its_deadline_returns_and_later_blocks_share_the_handle() -> None:
    loop = asyncio.get_running_loop()
    before = _armed(loop)
    timer = StepTimer()
    for _ in range(50):
        with timer.after(10.0):
            await asyncio.sleep(0)
    # One handle for the fifty blocks, where ``asyncio.timeout`` scheduled (and cancelled) fifty.
    assert _armed(loop) == before + 1
    timer.close()
    assert _armed(loop) == before


async def test_a_handle_armed_by_an_earlier_block_moves_to_the_deadline_of_the_block_in_progress() -> None:
    timer = StepTimer()
    with timer.after(0.05):
        pass
    await asyncio.sleep(0.03)
    # The handle fires at 0.05 from the first block; this block's deadline is ~0.13: it is not cut short.
    with timer.after(0.1):
        await asyncio.sleep(0.06)
    with pytest.raises(TimeoutError), timer.after(0.1):
        await asyncio.sleep(0.5)
    timer.close()


async def test_a_shorter_deadline_than_the_armed_handle_is_kept() -> None:
    timer = StepTimer()
    with timer.after(30.0):
        pass
    started = asyncio.get_running_loop().time()
    with pytest.raises(TimeoutError), timer.after(0.02):
        await asyncio.sleep(5)
    assert asyncio.get_running_loop().time() - started < 1.0
    timer.close()


async def test_a_zero_or_negative_timeout_expires_at_the_first_wait() -> None:
    timer = StepTimer()
    for seconds in (0.0, -1.0):
        with pytest.raises(TimeoutError), timer.after(seconds):
            await asyncio.sleep(1)
    timer.close()


async def test_another_cancel_asked_for_meanwhile_is_not_turned_into_a_timeout() -> None:
    timer = StepTimer()
    loop = asyncio.get_running_loop()

    async def body() -> None:
        task = asyncio.current_task()
        assert task is not None
        with timer.after(0.01):
            time.sleep(0.03)  # noqa: ASYNC251  # the loop held past the deadline: the handle is due next turn
            await asyncio.sleep(0)  # that turn runs this task on, then the handle (it cancels the task)
            loop.call_soon(task.cancel)  # a cancel of someone else's, after the timer's and before
            await asyncio.sleep(0)  # this task goes on: it is cancelled twice, once by the timer

    with pytest.raises(asyncio.CancelledError):
        await asyncio.create_task(body())
    timer.close()


async def test_a_cancel_from_elsewhere_before_the_deadline_stays_a_cancel() -> None:
    timer = StepTimer()
    blocked = asyncio.Event()

    async def body() -> None:
        with timer.after(10.0):
            blocked.set()
            await asyncio.sleep(1)

    task = asyncio.create_task(body())
    await blocked.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    timer.close()


async def test_an_exception_from_the_block_passes_through_and_the_timer_times_the_next() -> None:
    timer = StepTimer()
    with pytest.raises(ValueError), timer.after(10.0):
        raise ValueError("the step's own failure")
    with pytest.raises(TimeoutError), timer.after(0.02):
        await asyncio.sleep(1)
    timer.close()


async def test_one_block_at_a_time() -> None:
    timer = StepTimer()
    with timer.after(10.0), pytest.raises(RuntimeError, match="one block at a time"), timer.after(10.0):
        pass
    timer.close()


async def test_the_timer_fires_while_no_block_is_in_progress_and_disarms() -> None:
    loop = asyncio.get_running_loop()
    before = _armed(loop)
    timer = StepTimer()
    with timer.after(0.01):
        pass
    await asyncio.sleep(0.05)  # fired with no block in it: nothing cancelled, nothing armed again
    assert _armed(loop) == before
    with pytest.raises(TimeoutError), timer.after(0.02):
        await asyncio.sleep(1)
    timer.close()
