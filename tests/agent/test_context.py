from __future__ import annotations

import pytest

from shopfloor.agent import ContextWindow, Turn
from shopfloor.models import Message


def count(text: str) -> int:
    return len(text.split()) or 1


def turn(i: int, words: int = 10) -> Turn:
    return Turn(
        messages=(
            Message(role="assistant", content=f"call {i} " + "w " * words),
            Message(role="user", content="ok"),
        ),
        summary=f"step {i}",
    )


SYSTEM = Message(role="system", content="be useful")
TASK = Message(role="user", content="do the task")


def test_everything_fits_when_small() -> None:
    fit = ContextWindow(context_length=1000, reserve=100, count=count).fit(SYSTEM, TASK, [turn(1), turn(2)])
    assert fit.dropped_turns == 0
    assert [m.content for m in fit.messages][:2] == ["be useful", "do the task"]
    assert len(fit.messages) == 6


def test_old_turns_are_summarised_and_recent_kept() -> None:
    window = ContextWindow(context_length=120, reserve=20, count=count)
    fit = window.fit(SYSTEM, TASK, [turn(i) for i in range(1, 11)])
    assert fit.dropped_turns > 0
    assert fit.tokens <= 100
    summary = fit.messages[2].content
    assert summary.startswith("(Earlier steps, summarised: step 1; step 2")
    assert fit.messages[-2].content.startswith("call 10")
    assert sum(window.tokens(m) for m in fit.messages) <= 100


def test_huge_task_is_clipped_not_overflowing() -> None:
    window = ContextWindow(context_length=200, reserve=50, count=count)
    task = Message(role="user", content="word " * 5000)
    fit = window.fit(SYSTEM, task, [turn(1)])
    assert sum(window.tokens(m) for m in fit.messages) <= 150
    assert "clipped to fit" in fit.messages[1].content


def test_reserve_must_leave_room() -> None:
    with pytest.raises(ValueError, match="no room"):
        ContextWindow(context_length=100, reserve=100, count=count)


def test_a_steps_cost_does_not_grow_with_the_history() -> None:
    """Characters tokenised by one more step's fit, after 200 and after 2,000 steps: the same."""
    counted = [0]

    def counting(text: str) -> int:
        counted[0] += len(text)
        return count(text)

    def next_step_cost(steps: int) -> int:
        window = ContextWindow(context_length=300, reserve=50, count=counting)
        turns = [turn(i) for i in range(1, steps + 1)]
        window.fit(SYSTEM, TASK, turns[:-1])
        counted[0] = 0
        fit = window.fit(SYSTEM, TASK, turns)
        assert fit.messages[2].content.startswith("(Earlier steps, summarised: step 1; step 2")
        assert f"step {steps - 3}" in fit.messages[2].content or fit.dropped_turns < steps - 3
        return counted[0]

    assert next_step_cost(2000) <= next_step_cost(200) * 1.1


def test_a_long_history_is_summarised_by_its_ends() -> None:
    window = ContextWindow(context_length=300, reserve=50, count=count)
    fit = window.fit(SYSTEM, TASK, [turn(i) for i in range(1, 5001)])
    summary = fit.messages[2].content
    assert summary.startswith("(Earlier steps, summarised: step 1; step 2")
    assert "more ..." in summary or "clipped to fit" in summary
    assert sum(window.tokens(m) for m in fit.messages) <= 250


def _walked(window: ContextWindow, system: Message, task: Message, turns: list[Turn]) -> tuple[int, int]:
    """The turns kept and tokens used by walking back over every turn (the window's definition)."""
    used = window.tokens(system) + window.tokens(task)
    summary_room = min(256, (window.budget - used) // 4)
    kept = 0
    for turn in reversed(turns):
        cost = sum(window.tokens(m) for m in turn.messages)
        room = window.budget - used - (summary_room if kept + 1 < len(turns) else 0)
        if cost > room:
            break
        kept += 1
        used += cost
    return kept, used


@pytest.mark.parametrize("seed", range(8))
def test_the_kept_turns_are_those_a_walk_over_the_history_keeps(seed: int) -> None:
    """The window keeps what walking back over every turn keeps, as a history grows one turn at a time,
    and when it is given another history (shorter, or with a turn replaced)."""
    import random

    rng = random.Random(seed)
    context = rng.choice([60, 120, 300, 2000])
    window = ContextWindow(context_length=context, reserve=20, count=count)
    turns: list[Turn] = []
    for step in range(1, 120):
        turns.append(turn(step, words=rng.choice([0, 1, 5, 10, 40])))
        if rng.random() < 0.05:
            turns = turns[: rng.randrange(len(turns) + 1)]  # another history, shorter
        if turns and rng.random() < 0.05:
            turns[rng.randrange(len(turns))] = turn(0, words=rng.choice([2, 30]))  # one turn replaced
        fit = window.fit(SYSTEM, TASK, turns)
        kept, used = _walked(
            ContextWindow(context_length=context, reserve=20, count=count), SYSTEM, TASK, turns
        )
        assert len(turns) - fit.dropped_turns == kept, (step, len(turns))
        kept_messages = [m for t in turns[len(turns) - kept :] for m in t.messages]
        assert list(fit.messages[len(fit.messages) - len(kept_messages) :]) == kept_messages
        summarised = len(fit.messages) == 3 + len(kept_messages)
        assert fit.dropped_turns or not summarised
        summary_tokens = window.tokens(fit.messages[2]) if summarised else 0
        assert fit.tokens == used + summary_tokens


def _summary_by_walking(turns: list[Turn], dropped: int, chars: int) -> str:
    """The summary line's definition: the dropped turns' summaries from the first on while fewer than
    ``chars`` characters are taken, and as many back from the last; what lies between, counted."""
    head: list[str] = []
    for turn in turns[:dropped]:
        if sum(len(line) + 2 for line in head) >= chars:
            break
        head.append(turn.summary)
    if len(head) == dropped:
        return "; ".join(head)
    tail: list[str] = []
    for index in range(dropped - 1, len(head) - 1, -1):
        if sum(len(line) + 2 for line in tail) >= chars:
            break
        tail.insert(0, turns[index].summary)
    elided = dropped - len(head) - len(tail)
    return "; ".join(head + ([f"... {elided} more ..."] if elided else []) + tail)


@pytest.mark.parametrize("seed", range(6))
def test_the_summary_line_is_the_dropped_turns_ends(seed: int) -> None:
    """The summary of dropped turns is what walking over them from both ends keeps, as a history
    grows (summaries of every length), and when another history replaces it."""
    import random

    rng = random.Random(seed)
    window = ContextWindow(context_length=rng.choice([120, 300, 2000]), reserve=20, count=count)
    turns: list[Turn] = []
    for step in range(1, 400):
        summary = f"step {step} " + "x" * rng.choice([0, 3, 40, 300])
        turns.append(Turn(messages=turn(step, words=rng.choice([1, 10, 40])).messages, summary=summary))
        if rng.random() < 0.03:
            turns = turns[: rng.randrange(len(turns) + 1)]
        fit = window.fit(SYSTEM, TASK, turns)
        if not fit.dropped_turns or len(fit.messages) < 3 or fit.messages[2].role != "user":
            continue
        summary_room = min(256, (window.budget - window.tokens(SYSTEM) - window.tokens(TASK)) // 4)
        expected = _summary_by_walking(turns, fit.dropped_turns, 16 * summary_room)
        content = fit.messages[2].content
        if "clipped to fit" not in content:
            assert content == f"(Earlier steps, summarised: {expected})", step


def test_another_task_is_clipped_and_counted_again() -> None:
    """The head (system prompt and task) clipped once per pair: another pair is not served the last."""
    window = ContextWindow(context_length=200, reserve=50, count=count)
    small = window.fit(SYSTEM, TASK, [turn(1)])
    huge = window.fit(SYSTEM, Message(role="user", content="word " * 5000), [turn(1)])
    again = window.fit(SYSTEM, TASK, [turn(1)])
    assert "clipped to fit" in huge.messages[1].content and huge.tokens > small.tokens
    assert again.messages == small.messages and again.tokens == small.tokens
