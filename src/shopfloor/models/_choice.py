"""Replies to a schema of fixed options, decoded at the branch points only: ``ChoicePlan``.

An argument stage of a ``two_phase`` decision asks for a JSON object whose properties are each an
enum (``{"operation": "best_group"}``, or four enums at once). Under a grammar, every token of such a
reply is a model step: about 10 to 30 sequential forward passes, most of them for tokens the grammar
forces (the braces, the keys, the rest of an option once its first token has told it apart). The
reply's text is known up to the choices, so ``ChoiceDecoder`` asks the model only where the options
still alive differ: the forced text before such a point goes into the same forward pass as the prompt
(a batch, as fast as prompt tokens), the model's likeliest token among those that continue an option
decides, and the text after the last choice is never evaluated at all. As with the grammar, a token is
allowed when its text continues some option (``Vocabulary.allowed``), so a choice is the grammar's
greedy choice; the whitespace between the JSON's parts is fixed (``json.dumps``'s separators) where a
grammar would let the model pick it.
"""

from __future__ import annotations

import ctypes
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

__all__ = ["ChoiceDecoder", "ChoicePlan", "Vocabulary", "choice_plan"]

_SCALARS = (str, int, float, bool, type(None))
#: keywords a plan may ignore: they do not constrain the reply's text
_NOTES = frozenset({"description", "title", "$schema", "$comment", "examples"})


@dataclass(frozen=True, kw_only=True)
class ChoicePlan:
    """The reply's text: one of each step's alternatives, in turn. A step is a property with its key
    and punctuation (``{"stat": "sum",``), cut after the comma, where a tokenizer cuts too."""

    steps: tuple[tuple[bytes, ...], ...]


def _options(prop: Any) -> list[str] | None:
    if not isinstance(prop, Mapping):
        return None
    if "const" in prop:
        values, rest = [prop["const"]], set(prop) - {"const"}
    elif isinstance(prop.get("enum"), list) and prop["enum"]:
        values, rest = prop["enum"], set(prop) - {"enum"}
    else:
        return None
    if rest - _NOTES - {"type"} or not all(isinstance(v, _SCALARS) for v in values):
        return None
    return list(dict.fromkeys(json.dumps(v) for v in values))  # as llama.cpp's grammar writes them


def choice_plan(schema: Mapping[str, Any]) -> ChoicePlan | None:
    """The plan of a schema that allows a fixed set of objects: an object whose properties are all
    required, each an enum or const of JSON scalars, with no other properties; otherwise None.
    The properties come in the schema's order, as llama.cpp's grammar writes them."""
    props = schema.get("properties")
    if schema.get("type") != "object" or not isinstance(props, Mapping) or not props:
        return None
    if set(schema) - _NOTES - {"type", "properties", "required", "additionalProperties"}:
        return None
    if set(schema.get("required", ())) != set(props) or schema.get("additionalProperties", True):
        return None
    steps = []
    for i, (name, prop) in enumerate(props.items()):
        options = _options(prop)
        if options is None:
            return None
        lead = ("{" if i == 0 else " ") + json.dumps(name) + ": "
        end = "}" if i == len(props) - 1 else ","
        steps.append(tuple(f"{lead}{option}{end}".encode() for option in options))
    return ChoicePlan(steps=tuple(steps))


class Vocabulary:
    """Each token's text (bytes), and the tokens by text; control tokens have none."""

    def __init__(self, pieces: Sequence[bytes]) -> None:
        self.pieces = pieces
        self._ids: dict[bytes, list[int]] = {}
        for token, piece in enumerate(pieces):
            if piece:
                self._ids.setdefault(piece, []).append(token)
        self._longest = max((len(p) for p in pieces), default=0)

    @classmethod
    def of(cls, vocab: Any, size: int) -> Vocabulary:
        """The vocabulary of a llama.cpp ``llama_vocab_p`` of ``size`` tokens."""
        import llama_cpp

        buffer = ctypes.create_string_buffer(256)
        pieces = []
        for token in range(size):
            n = llama_cpp.llama_token_to_piece(vocab, token, buffer, len(buffer), 0, False)
            pieces.append(buffer.raw[:n] if n > 0 else b"")
        return cls(pieces)

    def allowed(self, texts: Sequence[bytes]) -> list[int]:
        """The tokens whose text starts one of ``texts`` (a non-empty prefix of it)."""
        found: set[int] = set()
        for text in texts:
            for n in range(1, min(len(text), self._longest) + 1):
                found.update(self._ids.get(text[:n], ()))
        return sorted(found)


class ChoiceDecoder:
    """One reply's walk through its plan: take the tokens decided without the model
    (``take_forced``); where the reply is not complete (``done``), the model picks one of
    ``allowed``, which ``accept`` consumes (the caller has the token)."""

    def __init__(
        self, plan: ChoicePlan, vocabulary: Vocabulary, tokenize: Callable[[bytes], list[int]]
    ) -> None:
        self._vocabulary = vocabulary
        self._tokenize = tokenize
        self._steps = list(plan.steps)
        #: the rest of each alternative of this step still possible
        self._alive: list[bytes] = []
        self._forced: list[int] = []
        self._settle()

    @property
    def done(self) -> bool:
        return not self._alive

    def take_forced(self) -> list[int]:
        """The tokens decided since the last call."""
        forced, self._forced = self._forced, []
        return forced

    def allowed(self) -> list[int]:
        return self._vocabulary.allowed(self._alive)

    def accept(self, token: int) -> None:
        piece = self._vocabulary.pieces[token]
        alive = [rest[len(piece) :] for rest in self._alive if piece and rest.startswith(piece)]
        if not alive:
            raise ValueError(f"token {token} ({piece!r}) continues none of the options")
        self._alive = alive
        self._settle()

    def _settle(self) -> None:
        """Decide the tokens all the alternatives alive begin with, as the tokenizer writes them
        (so the model reads its usual tokens), up to the next point where they differ."""
        while True:
            if not self._alive:
                if not self._steps:
                    return
                self._alive = list(self._steps.pop(0))
            if len(self._alive) == 1:
                self._forced += self._tokenize(self._alive.pop())
                continue
            tokenized = [self._tokenize(rest) for rest in self._alive]
            shared = _shared(tokenized)
            text = b"".join(self._vocabulary.pieces[t] for t in tokenized[0][:shared])
            if all(rest.startswith(text) and len(rest) > len(text) for rest in self._alive):
                self._forced += tokenized[0][:shared]
                self._alive = [rest[len(text) :] for rest in self._alive]
            return


def _shared(sequences: Sequence[Sequence[int]]) -> int:
    """How many items all ``sequences`` begin with, short of the whole of any."""
    n = min(len(s) for s in sequences) - 1
    first = sequences[0]
    for i in range(n):
        if any(s[i] != first[i] for s in sequences):
            return i
    return max(n, 0)
