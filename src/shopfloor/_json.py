"""``json.JSONEncoder(...).encode`` straight through the C encoder, for the texts written every step.

``JSONEncoder.encode`` reaches the C encoder (``json.encoder.c_make_encoder``) through two Python
calls (``encode``, ``iterencode``) and two ``isinstance`` checks, and makes that encoder anew for each
value. An agent iteration writes a dozen and a half JSON texts (a step's output, its events, its span
attributes, the redaction screen), so those layers were ~50 of its Python calls. ``JsonText`` makes
the same C encoder with the same arguments ``iterencode`` passes it (a fresh ``markers`` dict for each
value, as there: a value that failed half-way leaves its marks behind), so its text, and what it
raises, are the encoder's. Without the C accelerator it is the encoder's own ``encode``.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from json.encoder import c_make_encoder, encode_basestring, encode_basestring_ascii  # type: ignore[attr-defined]
from typing import Any

__all__ = ["COMPACT", "JsonText"]


class JsonText:
    """``json.JSONEncoder(ensure_ascii=..., separators=..., default=...).encode`` (no indent)."""

    __slots__ = ("_args", "_encoder")

    def __init__(
        self,
        *,
        ensure_ascii: bool = True,
        separators: tuple[str, str] | None = None,
        default: Callable[[Any], Any] | None = None,
    ) -> None:
        encoder = json.JSONEncoder(ensure_ascii=ensure_ascii, separators=separators, default=default)
        self._encoder = encoder
        # ``JSONEncoder.iterencode``'s arguments to ``c_make_encoder``, after the markers
        self._args = (
            encoder.default,
            encode_basestring_ascii if encoder.ensure_ascii else encode_basestring,
            encoder.indent,
            encoder.key_separator,
            encoder.item_separator,
            encoder.sort_keys,
            encoder.skipkeys,
            encoder.allow_nan,
        )

    def encode(self, value: Any) -> str:
        if c_make_encoder is None:
            text: str = self._encoder.encode(value)
            return text
        return "".join(c_make_encoder({}, *self._args)(value, 0))


#: ``json.dumps(value, default=str, separators=(",", ":"))``: how the run store's JSON columns, events and
#: span attributes are written (one encoder for all; ``encode`` keeps no state between values)
COMPACT = JsonText(default=str, separators=(",", ":"))
