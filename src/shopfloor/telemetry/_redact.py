"""Secret redaction for recorded content (prompts, tool arguments and results).

Patterns cover the secrets that end up in agent traffic: provider API keys,
bearer tokens, JWTs, cloud access keys, private key blocks, and the values of
fields named like a password or token (in JSON, ``key=value`` and headers).
"""

from __future__ import annotations

import re

__all__ = ["REDACTED", "redact"]

REDACTED = "[REDACTED]"

_KEYWORD = (
    r"(?:password|passwd|pwd|secret|(?<!first_)token(?!s)|api[_-]?key|access[_-]?key|private[_-]?key|credential"
    r"|authorization)"
)
_SECRET_NAME = rf"{_KEYWORD}[A-Za-z0-9_.-]*"
# Case-insensitive search is ten times slower in ``re``: a cheap screen on the lowered text
# (and the case-sensitive token shapes) lets the common text without secrets skip the patterns.
_SCREEN_LOWER = re.compile(rf"{_KEYWORD}|bearer|basic")
_SCREEN = re.compile(r"eyJ|[spr]k-|gh[pousr]_|github_pat|glpat|xox|AKIA|ASIA|AIza|PRIVATE KEY|://[^\s@/]*@")

_PATTERNS: tuple[tuple[re.Pattern[str], str], ...] = (
    (
        re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----.*?-----END [A-Z ]*PRIVATE KEY-----", re.DOTALL),
        REDACTED,
    ),
    (re.compile(r"\b(Bearer|Basic)\s+[A-Za-z0-9._~+/=-]{8,}", re.IGNORECASE), rf"\1 {REDACTED}"),
    # "password": "value" in JSON (the value may contain escaped quotes)
    (re.compile(rf'({_SECRET_NAME}"\s*:\s*")((?:[^"\\]|\\.)*)(")', re.IGNORECASE), rf"\1{REDACTED}\3"),
    # password=value, token: value (query strings, env files, headers)
    (
        re.compile(rf"({_SECRET_NAME}\s*[=:]\s*)(?![\"\[]|Bearer|Basic)([^\s&,;]+)", re.IGNORECASE),
        rf"\1{REDACTED}",
    ),
    (re.compile(r"\beyJ[A-Za-z0-9_-]{5,}\.eyJ[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]+"), REDACTED),
    (re.compile(r"\b(?:sk|pk|rk)-[A-Za-z0-9_-]{16,}"), REDACTED),
    (re.compile(r"\b(?:ghp|gho|ghu|ghs|ghr|github_pat|glpat|xox[abprs])[-_][A-Za-z0-9_-]{16,}"), REDACTED),
    (re.compile(r"\b(?:AKIA|ASIA)[0-9A-Z]{16}\b"), REDACTED),
    (re.compile(r"\bAIza[0-9A-Za-z_-]{35}\b"), REDACTED),
    (re.compile(r"(://[^/\s:@]+:)([^@\s/]+)(@)"), rf"\1{REDACTED}\3"),
)


def redact(text: str) -> str:
    """``text`` with every secret it recognises replaced by ``[REDACTED]``."""
    if not (_SCREEN.search(text) or _SCREEN_LOWER.search(text.lower())):
        return text
    for pattern, replacement in _PATTERNS:
        text = pattern.sub(replacement, text)
    return text
