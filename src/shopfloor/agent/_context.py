"""A token-counted context window.

It always keeps the system prompt and the task, then as many of the most recent
turns as fit, and replaces the dropped older turns by a one-message summary of
what they did. It never sends more than the model's context length minus the
room reserved for the reply.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from shopfloor.models import Message

__all__ = ["ContextWindow", "Turn", "WindowFit"]

#: Messages a chat template adds around each message, roughly, in tokens.
_PER_MESSAGE = 4


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
        # tokenizer costs ~1 us per character), keyed by the message itself (they are frozen).
        self._counted: dict[Message, int] = {}
        self._turn_costs: dict[int, tuple[Turn, int]] = {}

    def tokens(self, message: Message) -> int:
        counted = self._counted.get(message)
        if counted is None:
            extra = sum(self._count(call.arguments) + self._count(call.name) for call in message.tool_calls)
            counted = self._counted[message] = self._count(message.content) + extra + _PER_MESSAGE
        return counted

    def _turn_cost(self, turn: Turn) -> int:
        # By identity (turns are appended, never changed): a turn's messages are summed once.
        known = self._turn_costs.get(id(turn))
        if known is None or known[0] is not turn:
            known = self._turn_costs[id(turn)] = (turn, sum(self.tokens(m) for m in turn.messages))
        return known[1]

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
        kept: list[Turn] = []
        # Room for the summary line of dropped turns, if any are dropped.
        summary_room = min(256, (self.budget - used) // 4)
        for turn in reversed(turns):
            cost = self._turn_cost(turn)
            room = self.budget - used - (summary_room if len(kept) + 1 < len(turns) else 0)
            if cost > room:
                break
            kept.append(turn)
            used += cost
        kept.reverse()
        dropped = len(turns) - len(kept)
        messages = [system, task]
        if dropped:
            lines = _summaries(turns, dropped, chars=16 * summary_room)
            summary = Message(role="user", content=f"(Earlier steps, summarised: {lines})")
            summary = self._clip(summary, max(summary_room, _PER_MESSAGE + 8))
            if used + self.tokens(summary) <= self.budget:
                messages.append(summary)
                used += self.tokens(summary)
        for turn in kept:
            messages.extend(turn.messages)
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
