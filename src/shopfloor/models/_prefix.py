"""Processed prompt prefixes kept for later requests: ``PrefixStates``.

llama.cpp reuses its KV cache for the tokens a prompt shares with the previous one, but a context
holds one sequence: a request that goes back to an earlier prefix (the next run of an agent, after
its last run's other conversations) would evaluate it again. An agent's instructions, its tools
and a skill's instructions come first in its prompts and repeat in every run, so after a request
that marks such a prefix (``ModelRequest.cache_prefix``), the context's state is kept here; a later
prompt that shares more tokens with a kept state than with the context restores that state, and
llama.cpp then evaluates only what follows the shared part. A state is the context's data from
``llama_state_get_data`` (the KV cells in use and the last logits: some MiB for the small models),
at most ``capacity`` of them, least recently used dropped first. With a ``DiskPrefixCache`` each kept
state is also saved to disk, and a prompt that no state in memory serves looks there, so the first
request of a new process starts from the prefix an earlier process computed (``_prefix_disk.py``).
"""

from __future__ import annotations

import ctypes
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from shopfloor.models._prefix_disk import DiskPrefixCache

__all__ = ["MIN_GAIN", "PrefixStates", "common_prefix"]

#: Restoring costs a copy of the state: worth it only when it saves at least this many tokens.
MIN_GAIN = 32


def common_prefix(a: Sequence[int], b: Sequence[int]) -> int:
    n = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        n += 1
    return n


@dataclass(frozen=True, kw_only=True)
class _State:
    tokens: tuple[int, ...]
    data: bytes


class PrefixStates:
    """Kept context states of one llama.cpp context, by the tokens they hold."""

    def __init__(self, capacity: int = 4, *, disk: DiskPrefixCache | None = None) -> None:
        self.capacity = capacity
        self.disk = disk
        self._states: OrderedDict[tuple[int, ...], _State] = OrderedDict()
        #: states restored so far (for tests and measurements)
        self.restores = 0

    def __len__(self) -> int:
        return len(self._states)

    def best(self, tokens: Sequence[int], current: int) -> _State | None:
        """The kept state sharing the most tokens with ``tokens``, where it shares at least
        ``MIN_GAIN`` more than the context does now (``current``)."""
        found, shared = None, current + MIN_GAIN - 1
        for state in self._states.values():
            n = common_prefix(state.tokens, tokens)
            if n > shared:
                found, shared = state, n
        if found is not None:
            self._states.move_to_end(found.tokens)
        elif self.disk is not None and len(tokens) > shared:
            saved = self.disk.best(tokens, shared)
            if saved is not None:
                found = self._add(saved.tokens, saved.data)
        return found

    def covers(self, tokens: Sequence[int], length: int) -> bool:
        """Whether a kept state already holds the first ``length`` of ``tokens``."""
        return any(common_prefix(s.tokens, tokens) >= length for s in self._states.values())

    def extended(self, tokens: Sequence[int]) -> _State | None:
        """A kept state whose tokens begin ``tokens`` (and are fewer)."""
        for state in self._states.values():
            if len(state.tokens) < len(tokens) and common_prefix(state.tokens, tokens) == len(state.tokens):
                return state
        return None

    def keep(
        self, ctx: Any, tokens: Sequence[int], *, replacing: _State | None = None, save: bool = True
    ) -> None:
        """Keep the state of ``ctx`` (a ``llama_context_p``), which holds ``tokens``; ``replacing``:
        a kept state it extends, which it replaces (any prompt shares at least as many tokens with
        the longer one); ``save``: on disk too, where there is a disk cache."""
        import llama_cpp

        size = llama_cpp.llama_state_get_size(ctx)
        buffer = (ctypes.c_uint8 * size)()
        written = llama_cpp.llama_state_get_data(ctx, buffer, size)
        if written <= 0 or written > size:
            return
        if replacing is not None:
            self._states.pop(replacing.tokens, None)
        state = self._add(tuple(tokens), ctypes.string_at(buffer, written))
        if self.disk is not None and save:
            self.disk.save(state.tokens, state.data)

    def _add(self, tokens: tuple[int, ...], data: bytes) -> _State:
        state = self._states[tokens] = _State(tokens=tokens, data=data)
        self._states.move_to_end(tokens)
        while len(self._states) > self.capacity:
            self._states.popitem(last=False)
        return state

    def restore(self, ctx: Any, state: _State) -> bool:
        """Restore ``state`` into ``ctx``; False (the state dropped) when llama.cpp refuses it, after
        which the context's cache must be taken as empty."""
        import llama_cpp

        buffer = (ctypes.c_uint8 * len(state.data)).from_buffer_copy(state.data)
        if llama_cpp.llama_state_set_data(ctx, buffer, len(state.data)) != len(state.data):
            self._states.pop(state.tokens, None)
            if self.disk is not None:
                self.disk.discard(state.tokens, "llama.cpp refused to restore it")
            return False
        self.restores += 1
        return True
