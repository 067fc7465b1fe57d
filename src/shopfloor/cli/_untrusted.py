"""Printing text that a model, a tool or a task wrote: never markup, never terminal control.

Rich interprets ``[tag]`` markup in strings: in a model's tool arguments, ``[conceal]...``
hides part of a call from the person approving it, and an unbalanced ``[/magenta]`` raises
a ``MarkupError`` that ends ``shopfloor run``. Untrusted values therefore become ``Text``
(which is never parsed), with control characters and bidirectional overrides escaped, since
those can hide or reorder what a terminal shows as well.
"""

from __future__ import annotations

import json
from typing import Any

from rich.text import Text

__all__ = ["pretty_json", "untrusted"]

# C0 and C1 controls (but newline and tab), DEL, and the Unicode bidirectional formatting
# characters ("Trojan Source"): each shown as a backslash-u escape of four hex digits.
_HIDDEN = [*range(0x00, 0x09), *range(0x0B, 0x20), *range(0x7F, 0xA0)]
_HIDDEN += [0x061C, 0x200E, 0x200F, *range(0x202A, 0x202F), *range(0x2066, 0x206A)]
_ESCAPES = {code: f"\\u{code:04x}" for code in _HIDDEN}


def _visible(text: str) -> str:
    return text.translate(_ESCAPES)


def untrusted(value: Any, *, style: str = "", width: int | None = None) -> Text:
    """``value`` as plain text (JSON unless a string), optionally cut to ``width`` characters."""
    text = value if isinstance(value, str) else json.dumps(value, default=str, ensure_ascii=False)
    text = _visible(text)
    if width is not None and len(text) > width:
        text = text[: width - 1] + "…"
    return Text(text, style=style)


def pretty_json(value: Any, *, style: str = "") -> Text:
    """``value`` in full as indented JSON (an approver reads the whole call)."""
    return Text(_visible(json.dumps(value, default=str, ensure_ascii=False, indent=2)), style=style)
