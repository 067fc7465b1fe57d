"""Regular expressions and globs from a model, matched in linear time (RE2).

Python's ``re`` backtracks: ``(a+)+$`` against a long line of ``a`` runs for minutes, and
so does a glob such as ``*a*a*a*a*a*a*a*a*b`` translated to a regex. A model's tool
arguments are untrusted, so every pattern a tool takes goes through RE2, whose matching
time is linear in the text. RE2 has no backreferences or lookaround: such a pattern is
refused with the engine's reason.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import re2

from shopfloor.errors import WorkspaceError

__all__ = ["LinearPattern", "compile_linear"]


@dataclass(frozen=True)
class LinearPattern:
    """A compiled RE2 pattern (``search`` anywhere in a line, ``fullmatch`` a whole path)."""

    source: str
    _regex: Any

    def search(self, text: str) -> bool:
        return self._regex.search(text) is not None

    def fullmatch(self, text: str) -> bool:
        return self._regex.fullmatch(text) is not None


def compile_linear(pattern: str, *, ignore_case: bool = False, what: str = "pattern") -> LinearPattern:
    """Compile ``pattern`` for RE2; ``what`` names it in the error (``grep pattern``, ``glob``)."""
    options = re2.Options()
    options.log_errors = False  # the error goes to the caller, not to stderr
    options.case_sensitive = not ignore_case
    options.dot_nl = True
    try:
        regex = re2.compile(pattern, options)
    except re2.error as exc:
        reason = exc.args[0].decode() if exc.args and isinstance(exc.args[0], bytes) else str(exc)
        raise WorkspaceError(
            f"{what} {pattern!r} is not a valid regular expression for the linear-time engine (RE2): "
            f"{reason} (backreferences and lookaround are not supported)"
        ) from None
    return LinearPattern(pattern, regex)
