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
greedy choice. Where the grammar lets the model write a space or none (``GAPS``) that is a choice too,
the first time in a reply; the reply keeps that spacing after (a model writes its JSON one way), and
other whitespace (newlines, a space before a colon) is left out.
"""

from __future__ import annotations

import ctypes
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from shopfloor.models._prefix import common_prefix

__all__ = ["GAPS", "ChoiceDecoder", "ChoicePlan", "Vocabulary", "choice_plan"]

_SCALARS = (str, int, float, bool, type(None))
#: keywords a plan may ignore: they do not constrain the reply's text
_NOTES = frozenset({"description", "title", "$schema", "$comment", "examples"})


#: the gaps where llama.cpp's JSON grammar lets the model write a space, and a reply's spacing there
#: is its choice the first time (then kept): after "{", after a key's colon, after a comma
GAPS = ("open", "colon", "comma")
_WAYS = ("", " ")


@dataclass(frozen=True, kw_only=True)
class ChoicePlan:
    """The reply's properties in order: each key and its options, as JSON text."""

    properties: tuple[tuple[str, tuple[str, ...]], ...]

    def step(self, index: int, spacing: Mapping[str, str]) -> list[tuple[bytes, dict[str, str]]]:
        """The alternatives of property ``index`` (``{"stat": "sum",`` or `` "year": 2015}``: each
        ends in a comma or the brace, so that no option's text begins another's), each with the
        spacing it writes; a gap spaced already (``spacing``) is written that way, the others both
        ways."""
        key, options = self.properties[index]
        gap = "open" if index == 0 else "comma"
        leads = [spacing[gap]] if gap in spacing else list(_WAYS)
        colons = [spacing["colon"]] if "colon" in spacing else list(_WAYS)
        start = "{" if index == 0 else ""
        end = "}" if index == len(self.properties) - 1 else ","
        return [
            (f"{start}{lead}{key}:{colon}{option}{end}".encode(), {gap: lead, "colon": colon})
            for lead in leads
            for colon in colons
            for option in options
        ]


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
    properties = []
    for name, prop in props.items():
        options = _options(prop)
        if options is None:
            return None
        properties.append((json.dumps(name), tuple(options)))
    return ChoicePlan(properties=tuple(properties))


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
        self._plan = plan
        self._next = 0
        #: the reply's spacing at each gap, once it has written one
        self.spacing: dict[str, str] = {}
        #: the rest of each alternative of this step still possible, with its spacing
        self._alive: list[tuple[bytes, dict[str, str]]] = []
        #: text decided and not yet tokenized: it joins the next step's alternatives, so that the
        #: tokens across a step's end are the tokenizer's (``","`` is one token)
        self._pending = b""
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
        return self._vocabulary.allowed([rest for rest, _ in self._alive])

    def accept(self, token: int) -> None:
        piece = self._vocabulary.pieces[token]
        alive = [(rest[len(piece) :], gaps) for rest, gaps in self._alive if piece and rest.startswith(piece)]
        if not alive:
            raise ValueError(f"token {token} ({piece!r}) continues none of the options")
        self._alive = alive
        self._settle()

    def _settle(self) -> None:
        """Decide the tokens all the alternatives alive begin with, as the tokenizer writes them
        (so the model reads its usual tokens), up to the next point where they differ."""
        while True:
            if not self._alive:
                if self._next == len(self._plan.properties):
                    self._forced += self._tokenize(self._pending)
                    self._pending = b""
                    return
                step = self._plan.step(self._next, self.spacing)
                self._alive = [(self._pending + text, gaps) for text, gaps in step]
                self._pending = b""
                self._next += 1
            if len(self._alive) == 1:
                rest, gaps = self._alive.pop()
                self.spacing.update(gaps)
                self._pending = rest
                continue
            tokenized = [self._tokenize(rest) for rest, _ in self._alive]
            shared = _shared(tokenized)
            text = b"".join(self._vocabulary.pieces[t] for t in tokenized[0][:shared])
            if all(rest.startswith(text) and len(rest) > len(text) for rest, _ in self._alive):
                self._forced += tokenized[0][:shared]
                self._alive = [(rest[len(text) :], gaps) for rest, gaps in self._alive]
            return


def _shared(sequences: Sequence[Sequence[int]]) -> int:
    """How many items all ``sequences`` begin with, short of the whole of any."""
    first = sequences[0]
    shortest = min(len(s) for s in sequences) - 1
    return max(min([shortest, *(common_prefix(first, s) for s in sequences[1:])]), 0)
