"""A token-counted context window.

It always keeps the system prompt and the task, then as many of the most recent
turns as fit, and replaces the dropped older turns by a one-message summary of
what they did. It never sends more than the model's context length minus the
room reserved for the reply.
"""

from __future__ import annotations

import bisect
import itertools
import operator
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from shopfloor.models import Message

__all__ = ["ContextWindow", "Turn", "WindowFit"]

#: Messages a chat template adds around each message, roughly, in tokens.
_PER_MESSAGE = 4
_messages_of = operator.attrgetter("messages")
#: messages whose token count a window remembers (the summary of each fit is a new one)
_REMEMBERED = 8192


@dataclass(frozen=True, kw_only=True)
class Turn:
    """One step's messages (the model's action and what came back) and a one-line summary."""

    messages: tuple[Message, ...]
    summary: str


@dataclass(frozen=True, kw_only=True)
class WindowFit:
    messages: tuple[Message, ...]
    dropped_turns: int
    tokens: int


class ContextWindow:
    def __init__(self, *, context_length: int, reserve: int, count: Callable[[str], int]) -> None:
        if reserve >= context_length:
            raise ValueError(f"reply reserve {reserve} leaves no room in a {context_length}-token context")
        self.budget = context_length - reserve
        self._count = count
        # Every step fits the whole history again: each message is counted once (a real
        # tokenizer costs ~1 us per character), by identity (hashing a frozen message hashes
        # its whole text each time), holding the message so that its id is not reused.
        self._counted: dict[int, tuple[Message, int]] = {}
        #: the turns summed so far, by identity, and the running sums of their costs:
        #: ``_sums[i]`` is the cost of ``_summed[:i]`` (turns are appended, never changed)
        self._summed: list[Turn] = []
        self._sums: list[int] = [0]

    def tokens(self, message: Message) -> int:
        known = self._counted.get(id(message))
        if known is None or known[0] is not message:
            if len(self._counted) >= _REMEMBERED:
                self._counted.clear()  # the turns' costs stay summed in ``_sums``
            extra = sum(self._count(call.arguments) + self._count(call.name) for call in message.tool_calls)
            known = self._counted[id(message)] = (
                message,
                self._count(message.content) + extra + _PER_MESSAGE,
            )
        return known[1]

    def _running_sums(self, turns: Sequence[Turn]) -> list[int]:
        """``sums[i]``: the cost of ``turns[:i]``; only the turns appended since the last fit are summed."""
        summed = self._summed
        if len(turns) < len(summed) or list(turns[: len(summed)]) != summed:
            # Another history (compared by identity first, in C): start again.
            summed.clear()
            del self._sums[1:]
        sums = self._sums
        for turn in turns[len(summed) :]:
            summed.append(turn)
            sums.append(sums[-1] + sum(self.tokens(m) for m in turn.messages))
        return sums

    @staticmethod
    def _kept(sums: list[int], room: int, summary_room: int) -> int:
        """How many of the most recent turns fit: the longest run of them, newest first, that fits in
        ``room`` less the summary's room (no summary is needed where every turn is kept, so the oldest
        turn may use that room too). A binary search over the running sums: a step's cost does not
        grow with the history (the walk over every kept turn did, up to the window's size)."""
        count = len(sums) - 1
        if count == 0:
            return 0
        # The oldest turn index ``start`` (from 1: keeping them all is decided below) whose suffix
        # ``sums[count] - sums[start]`` fits in ``room - summary_room``.
        start = bisect.bisect_left(sums, sums[count] - (room - summary_room), 1, count)
        if start == 1 and sums[count] <= room:
            return count
        return count - start

    def _clip(self, message: Message, limit: int) -> Message:
        """Shorten ``message`` to about ``limit`` tokens, keeping its head and tail."""
        if self.tokens(message) <= limit:
            return message
        text = message.content
        keep = max(16, len(text) * max(limit - _PER_MESSAGE, 1) // max(self.tokens(message), 1) - 40)
        while True:
            clipped = text[: keep // 2] + "\n[... clipped to fit the context ...]\n" + text[-keep // 2 :]
            candidate = Message(role=message.role, content=clipped, tool_call_id=message.tool_call_id)
            if self.tokens(candidate) <= limit or keep <= 16:
                return candidate
            keep = keep * 3 // 4

    def fit(self, system: Message, task: Message, turns: Sequence[Turn]) -> WindowFit:
        # The system prompt and task may take at most 3/4 of the budget; the rest is for turns.
        head_room = self.budget * 3 // 4
        system = self._clip(system, head_room // 2)
        task = self._clip(task, head_room - self.tokens(system))
        used = self.tokens(system) + self.tokens(task)
        # Room for the summary line of dropped turns, if any are dropped.
        summary_room = min(256, (self.budget - used) // 4)
        keep = self._kept(self._running_sums(turns), self.budget - used, summary_room)
        count = len(turns)
        kept = turns[count - keep :] if keep else []
        used += self._sums[count] - self._sums[count - keep]
        dropped = count - keep
        messages = [system, task]
        if dropped:
            lines = _summaries(turns, dropped, chars=16 * summary_room)
            summary = Message(role="user", content=f"(Earlier steps, summarised: {lines})")
            summary = self._clip(summary, max(summary_room, _PER_MESSAGE + 8))
            if used + self.tokens(summary) <= self.budget:
                messages.append(summary)
                used += self.tokens(summary)
        # Joined in C: a full window holds hundreds of turns, and a Python call each was per-step work.
        messages.extend(itertools.chain.from_iterable(map(_messages_of, kept)))
        return WindowFit(messages=tuple(messages), dropped_turns=dropped, tokens=used)


def _summaries(turns: Sequence[Turn], dropped: int, *, chars: int) -> str:
    """The summaries of the first ``dropped`` turns, joined; where they are longer than about
    ``2 * chars``, only the first and last ``chars`` or so of them, as clipping would keep anyway.
    So a step's cost does not grow with the run's history (the whole join, then counting its
    tokens, did: O(steps) a step)."""
    head: list[str] = []
    size = 0
    for turn in turns[:dropped]:
        if size >= chars:
            break
        head.append(turn.summary)
        size += len(turn.summary) + 2
    if len(head) == dropped:
        return "; ".join(head)
    tail: list[str] = []
    size = 0
    for index in range(dropped - 1, len(head) - 1, -1):
        if size >= chars:
            break
        tail.append(turns[index].summary)
        size += len(turns[index].summary) + 2
    tail.reverse()
    elided = dropped - len(head) - len(tail)
    middle = [f"... {elided} more ..."] if elided else []
    return "; ".join(head + middle + tail)
