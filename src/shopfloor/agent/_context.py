"""A token-counted context window.

It always keeps the system prompt and the task, then as many of the most recent
turns as fit, and replaces the dropped older turns by a one-message summary of
what they did. It never sends more than the model's context length minus the
room reserved for the reply.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from shopfloor.models import Message

__all__ = ["ContextWindow", "Turn", "WindowFit"]

#: Messages a chat template adds around each message, roughly, in tokens.
_PER_MESSAGE = 4
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
        #: the summed turns' messages in one list, where turn ``i``'s start at ``_starts[i]``: the kept
        #: turns' messages are one slice of it (joining them again each step was O(window) in Python)
        self._flat: list[Message] = []
        self._starts: list[int] = [0]
        #: their summaries, and ``_chars[i]``: the joined length of ``_lines[:i]`` (each with its "; ")
        self._lines: list[str] = []
        self._chars: list[int] = [0]
        #: the system prompt and task last fitted, as given and as clipped, and the tokens of the clipped
        self._head: tuple[Message, Message, Message, Message, int] | None = None
        #: the last summary line, its limit and its message (clipped): the same while no more turns are
        #: dropped, and then not counted again
        self._summary: tuple[str, int, Message] | None = None

    def tokens(self, message: Message) -> int:
        known = self._counted.get(id(message))
        if known is None or known[0] is not message:
            if len(self._counted) >= _REMEMBERED:
                self._counted.clear()  # the turns' costs stay summed in ``_sums``
            extra = 0
            for call in message.tool_calls:  # a loop: a generator's every step was a Python call
                extra += self._count(call.arguments) + self._count(call.name)
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
            self._flat.clear()
            self._lines.clear()
            del self._sums[1:], self._starts[1:], self._chars[1:]
        sums, flat, starts, lines, chars = self._sums, self._flat, self._starts, self._lines, self._chars
        for turn in turns[len(summed) :]:
            summed.append(turn)
            cost = sums[-1]
            for message in turn.messages:  # a loop: a generator's every step was a Python call
                cost += self.tokens(message)
            sums.append(cost)
            flat.extend(turn.messages)
            starts.append(len(flat))
            lines.append(turn.summary)
            chars.append(chars[-1] + len(turn.summary) + 2)
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
        head = self._head
        if head is None or head[0] is not system or head[1] is not task:
            # The system prompt and task may take at most 3/4 of the budget; the rest is for turns.
            # The same two every step of a run: clipped and counted once.
            head_room = self.budget * 3 // 4
            clipped = self._clip(system, head_room // 2)
            clipped_task = self._clip(task, head_room - self.tokens(clipped))
            head = self._head = (
                system,
                task,
                clipped,
                clipped_task,
                self.tokens(clipped) + self.tokens(clipped_task),
            )
        system, task, used = head[2], head[3], head[4]
        # Room for the summary line of dropped turns, if any are dropped.
        summary_room = min(256, (self.budget - used) // 4)
        keep = self._kept(self._running_sums(turns), self.budget - used, summary_room)
        count = len(turns)
        used += self._sums[count] - self._sums[count - keep]
        dropped = count - keep
        messages = [system, task]
        if dropped:
            lines = self._summaries(dropped, chars=16 * summary_room)
            limit = max(summary_room, _PER_MESSAGE + 8)
            if self._summary is None or self._summary[:2] != (lines, limit):
                text = Message(role="user", content=f"(Earlier steps, summarised: {lines})")
                self._summary = (lines, limit, self._clip(text, limit))
            summary = self._summary[2]
            if used + self.tokens(summary) <= self.budget:
                messages.append(summary)
                used += self.tokens(summary)
        # A slice of the turns' messages, in C: a full window holds hundreds of turns.
        messages += self._flat[self._starts[count - keep] :]
        return WindowFit(messages=tuple(messages), dropped_turns=dropped, tokens=used)

    def _summaries(self, dropped: int, *, chars: int) -> str:
        """The summaries of the first ``dropped`` turns, joined; where they are longer than about
        ``2 * chars``, only the first and last ``chars`` or so of them, as clipping would keep anyway.
        Found by binary search over their running lengths, so a step's cost does not grow with the
        run's history (the whole join, then counting its tokens, did: O(steps) a step; a walk over
        the summaries that fit, O(window))."""
        lines, ends = self._lines, self._chars
        # The first ``head`` summaries: each one starts before ``chars`` characters are taken.
        head = min(dropped, bisect.bisect_left(ends, chars))
        if head == dropped:
            return "; ".join(lines[:dropped])
        # The last ones, back from ``dropped``: each ends within ``chars`` of the last's end.
        tail = min(dropped, max(head, bisect.bisect_right(ends, ends[dropped] - chars) - 1))
        middle = [f"... {tail - head} more ..."] if tail > head else []
        return "; ".join(lines[:head] + middle + lines[tail:dropped])
