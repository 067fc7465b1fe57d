"""Guardrails: checks on model inputs, model outputs and tool results that pass, redact, or block, with a
reason.

Shipped: ``pii`` (e-mail addresses, phone numbers, card numbers that pass the Luhn check, IBANs that pass
ISO 13616's mod-97 check, US social security and UK national insurance numbers, API keys and private keys),
``deny-topics`` (words or phrases a deployment refuses to discuss) and ``prompt-injection`` (instructions
aimed at the model inside a tool result or retrieved document). Each pattern is linear-time (no nested
quantifiers) and the text is bounded, so hostile input costs bounded time.
"""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from shopfloor._registry import Registry

__all__ = [
    "DenyTopics",
    "Guardrail",
    "GuardrailResult",
    "Guardrails",
    "PiiGuardrail",
    "PromptInjectionGuardrail",
    "Stage",
    "guardrails",
    "iban_ok",
    "luhn_ok",
]

Stage = Literal["input", "output", "tool_result"]
Action = Literal["pass", "redact", "block"]
#: only this much of a text is inspected (a longer one is blocked by the callers' own size limits first)
MAX_CHARS = 1_000_000


@dataclass(frozen=True, kw_only=True)
class GuardrailResult:
    action: Action
    text: str
    #: why, for the run and the trace (never the matched value itself)
    reasons: tuple[str, ...] = ()
    guardrail: str = ""


class Guardrail(ABC):
    name: str
    #: the stages it applies to
    stages: frozenset[Stage] = frozenset({"input", "output", "tool_result"})

    @abstractmethod
    def check(self, text: str, stage: Stage) -> GuardrailResult: ...


def luhn_ok(digits: str) -> bool:
    total = 0
    for index, char in enumerate(reversed(digits)):
        value = int(char)
        if index % 2 == 1:
            value = value * 2 - 9 if value > 4 else value * 2
        total += value
    return total % 10 == 0


def iban_ok(iban: str) -> bool:
    compact = iban.replace(" ", "").upper()
    if not 15 <= len(compact) <= 34:
        return False
    moved = compact[4:] + compact[:4]
    return int("".join(str(int(c, 36)) for c in moved)) % 97 == 1


_Check = Callable[[str], bool]


_ANY = re.compile("")
_DIGITS = re.compile(r"\d\d")


@dataclass(frozen=True, kw_only=True)
class _Pattern:
    kind: str
    regex: re.Pattern[str]
    valid: _Check = field(default=lambda _: True)
    #: a cheap search that must succeed before ``regex`` is worth running
    screen: re.Pattern[str] = _ANY


def _digits(text: str) -> str:
    return "".join(c for c in text if c.isdigit())


_PII: tuple[_Pattern, ...] = (
    _Pattern(
        kind="private key",
        screen=re.compile("PRIVATE KEY"),
        regex=re.compile(
            r"-----BEGIN [A-Z ]*PRIVATE KEY-----[\s\S]{0,8000}?-----END [A-Z ]*PRIVATE KEY-----"
        ),
    ),
    _Pattern(
        kind="api key",
        screen=re.compile(r"sk[-_]|AKIA|gh[pousr]_|hf_|xox|AIza"),
        regex=re.compile(
            r"\b(?:sk-(?:live-|proj-|ant-)?[A-Za-z0-9_-]{16,}|sk_live_[A-Za-z0-9]{16,}|AKIA[0-9A-Z]{16}"
            r"|gh[pousr]_[A-Za-z0-9]{30,}|hf_[A-Za-z0-9]{30,}|xox[abpr]-[A-Za-z0-9-]{10,}|AIza[0-9A-Za-z_-]{35})"
        ),
    ),
    _Pattern(
        kind="e-mail",
        screen=re.compile("@"),
        regex=re.compile(
            r"\b[A-Za-z0-9._%+-]{1,64}@[A-Za-z0-9-]{1,63}(?:\.[A-Za-z0-9-]{1,63}){0,8}\.[A-Za-z]{2,24}\b"
        ),
    ),
    _Pattern(
        kind="iban",
        screen=_DIGITS,
        regex=re.compile(r"\b[A-Z]{2}\d{2}(?: ?[A-Z0-9]{4}){2,7}(?: ?[A-Z0-9]{1,3})?\b"),
        valid=iban_ok,
    ),
    _Pattern(
        kind="card number",
        screen=_DIGITS,
        regex=re.compile(r"\b\d(?:[ -]?\d){12,18}\b"),
        valid=lambda t: luhn_ok(_digits(t)),
    ),
    _Pattern(
        kind="us ssn",
        screen=_DIGITS,
        regex=re.compile(r"\b(?!000|666|9\d\d)\d{3}-(?!00)\d{2}-(?!0000)\d{4}\b"),
    ),
    _Pattern(
        kind="uk nino",
        screen=_DIGITS,
        regex=re.compile(r"\b[A-CEGHJ-PR-TW-Z][A-CEGHJ-NPR-TW-Z] ?\d{2} ?\d{2} ?\d{2} ?[A-D]\b"),
    ),
    _Pattern(
        kind="phone",
        screen=_DIGITS,
        regex=re.compile(
            r"(?<![\w+])(?:\+\d{1,3}[ .-]?(?:\(?\d{1,4}\)?[ .-]?){1,4}\d{2,4}"
            r"|\(?\d{3}\)?[ .-]\d{3}[ .-]\d{4})\b"
        ),
        valid=lambda t: 9 <= len(_digits(t)) <= 15,
    ),
)


class PiiGuardrail(Guardrail):
    """Redacts (or, with ``block=True``, blocks) personal data and credentials."""

    name = "pii"

    def __init__(self, *, block: bool = False, kinds: Iterable[str] | None = None) -> None:
        self.block = block
        wanted = set(kinds) if kinds is not None else None
        self.patterns = [p for p in _PII if wanted is None or p.kind in wanted]

    def check(self, text: str, stage: Stage) -> GuardrailResult:
        found: list[str] = []
        result = text[:MAX_CHARS]
        for pattern in self.patterns:
            if pattern.screen.search(result) is None:
                continue

            def replace(match: re.Match[str], pattern: _Pattern = pattern) -> str:
                if not pattern.valid(match.group(0)):
                    return match.group(0)
                found.append(pattern.kind)
                return f"[{pattern.kind.upper()} REDACTED]"

            result = pattern.regex.sub(replace, result)
        if not found:
            return GuardrailResult(action="pass", text=text, guardrail=self.name)
        reasons = tuple(f"{kind} found" for kind in dict.fromkeys(found))
        if self.block:
            return GuardrailResult(action="block", text="", reasons=reasons, guardrail=self.name)
        return GuardrailResult(action="redact", text=result, reasons=reasons, guardrail=self.name)


class DenyTopics(Guardrail):
    """Blocks a text that mentions a denied topic (whole words or phrases, case-insensitive)."""

    name = "deny-topics"

    def __init__(self, topics: Sequence[str], *, stages: Iterable[Stage] = ("input", "output")) -> None:
        self.topics = [topic for topic in topics if topic.strip()]
        self.stages = frozenset(stages)
        alternatives = "|".join(re.escape(topic.strip()) for topic in self.topics) or r"(?!)"
        self.regex = re.compile(rf"\b(?:{alternatives})\b", re.IGNORECASE)

    def check(self, text: str, stage: Stage) -> GuardrailResult:
        match = self.regex.search(text[:MAX_CHARS])
        if match is None:
            return GuardrailResult(action="pass", text=text, guardrail=self.name)
        return GuardrailResult(
            action="block",
            text="",
            reasons=(f"denied topic {match.group(0).lower()!r}",),
            guardrail=self.name,
        )


#: what an injected to-do asks of the model (``TODO: Send a transaction to ...``)
_TODO_ACTIONS = (
    "send|transfer|pay|wire|e-?mail|forward|share|post|upload|modify|visit|invite|concatenate|say|tell"
    "|reserve|book|delete|make\\s+a\\s+reservation|change\\s+the\\s+password|create\\s+an?"
    "|get"
)

#: (a word that must be in the lowered text, the pattern then searched there): ``in`` screens each
#: pattern in C, where one alternation of them all costs ~0.6 ms a KB in ``re``
_INJECTIONS: tuple[tuple[str, re.Pattern[str]], ...] = tuple(
    (keyword, re.compile(pattern, re.DOTALL))
    for keyword, pattern in (
        *(
            (
                verb,
                # not \b: an injection glued to what precedes it ("External_Ignore", "USAIgnore")
                # starts no word; no other word ends in these verbs and goes on like this
                rf"{verb}\s+(?:all\s+|any\s+)?(?:the\s+|your\s+)?(?:previous|prior|above|earlier|original)\s+"
                # "instructions" misspelt too (AgentDojo's own attack says "iunstructions")
                r"(?:\w{0,4}str\w{0,3}ctions?|prompts?|rules|directions)",
            )
            for verb in ("ignore", "disregard", "forget", "override")
        ),
        # A to-do addressed to whoever reads the data (glued to what precedes it, too: "USATODO:"):
        # an action on the user's accounts, messages or money, or one that names where to send them.
        # A to-do in code ("TODO: send metrics in batches") names neither and passes.
        (
            "todo",
            rf"todo\s*:\s*(?:please\s+)?(?:{_TODO_ACTIONS})\b"
            # within the sentence or the next few (a YAML value folds its lines anywhere)
            r"(?=.{0,300}?(?:\b(?:my|me|the\s+user|account|website|link)\b|\bi\s+(?:should|want|need|am)\b"
            r"|@|https?://|www\.|\b[a-z]{2}\d{10,}))",
        ),
        ("now", r"\byou\s+are\s+now\s+(?:a|an|in|the)\b"),
        ("instruction", r"\bnew\s+instructions?\s*:"),
        ("system", r"\bsystem\s+(?:prompt|message|override)\s*:"),
        ("developer", r"\bdeveloper\s+(?:prompt|message|override)\s*:"),
        ("<", r"<\s*/?\s*(?:system|instructions?|im_start|information)\s*>"),
        (
            "task",
            r"\bbefore\s+(?:you\s+)?(?:solve|complete|answer|do)\s+(?:the\s+)?task\b.{0,80}\b(?:please|first|you\s+must)\b",
        ),
        ("message from", r"\bthis\s+is\s+an?\s+(?:important|urgent)\s+message\s+from\b"),
        ("the user", r"\bdo\s+not\s+(?:tell|inform|mention\s+(?:this\s+)?to)\s+the\s+user\b"),
    )
)


def _injection(text: str) -> re.Match[str] | None:
    lowered = text.lower()
    if "\\" in lowered:
        # a tool's output quoted as a string literal: its escaped line breaks glue words together
        lowered = lowered.replace("\\n", "\n").replace("\\t", "\t")
    for keyword, pattern in _INJECTIONS:
        if keyword in lowered and (match := pattern.search(lowered)):
            return match
    return None


#: a passage: text between blank lines, a string literal's escaped blank lines included
_PASSAGE_BREAK = re.compile(r"(?:\r?\n|\\n)[ \t]*(?:\r?\n|\\n)\s*")
#: what stands where a passage was withheld
WITHHELD = "[withheld by the prompt-injection guardrail: instructions to the model]"


class PromptInjectionGuardrail(Guardrail):
    """Blocks tool results and retrieved documents that carry instructions aimed at the model.

    ``scope="result"`` (the default, the safest) blocks: the whole tool result is withheld. With
    ``scope="passage"`` a string is cut at the first passage (text between blank lines) that carries
    them, and ``WITHHELD`` stands for the rest: a JSON result's other strings and what a document says
    before the injection still reach the model. When no single passage carries the instructions (they
    span a blank line), the whole string is replaced.
    """

    name = "prompt-injection"
    stages = frozenset({"tool_result"})

    def __init__(self, *, scope: str = "result") -> None:
        if scope not in ("result", "passage"):
            raise ValueError(f"scope must be 'result' or 'passage', not {scope!r}")
        self.scope = scope

    def check(self, text: str, stage: Stage) -> GuardrailResult:
        inspected = text[:MAX_CHARS]
        match = _injection(inspected)
        if match is None:
            return GuardrailResult(action="pass", text=text, guardrail=self.name)
        reason = f"instructions to the model in a {stage.replace('_', ' ')}: {match.group(0)[:60]!r}"
        if self.scope == "passage":
            return GuardrailResult(
                action="redact",
                # what lies beyond the inspected part follows the cut: withheld with it
                text=_withhold_passages(inspected),
                reasons=(f"{reason} (withheld from that passage on)",),
                guardrail=self.name,
            )
        return GuardrailResult(action="block", text="", reasons=(reason,), guardrail=self.name)


def _withhold_passages(text: str) -> str:
    """``text`` up to the first passage that carries instructions, then ``WITHHELD``: what follows an
    injection is the attacker's to place (AgentDojo's own attack puts its goal in a passage of its own,
    after the passage that gives it away), what precedes it is not. All of it when no passage carries
    them on its own (they span passages)."""
    kept: list[str] = []
    position = 0
    for found in _PASSAGE_BREAK.finditer(text):
        if _injection(text[position : found.start()]) is not None:
            break
        kept.append(text[position : found.end()])
        position = found.end()
    else:
        if _injection(text[position:]) is None:
            return WITHHELD  # the whole text carries them, no passage of it alone does
    return "".join(kept) + WITHHELD


def guardrails() -> Registry[Callable[..., Guardrail]]:
    """Guardrails by name (an agent's spec lists them)."""
    return Registry(
        "guardrail",
        {"pii": PiiGuardrail, "deny-topics": DenyTopics, "prompt-injection": PromptInjectionGuardrail},
    )


class Guardrails:
    """An agent's guardrails in order: the first block wins; redactions compose."""

    def __init__(self, rails: Sequence[Guardrail]) -> None:
        self.rails = tuple(rails)

    def apply(self, text: str, stage: Stage) -> GuardrailResult:
        reasons: list[str] = []
        names: list[str] = []
        action: Action = "pass"
        for rail in self.rails:
            if stage not in rail.stages:
                continue
            result = rail.check(text, stage)
            if result.action == "block":
                return result
            if result.action == "redact":
                action, text = "redact", result.text
                reasons += result.reasons
                names.append(rail.name)
        return GuardrailResult(action=action, text=text, reasons=tuple(reasons), guardrail=",".join(names))

    def apply_value(self, value: Any, stage: Stage) -> tuple[Any, GuardrailResult]:
        """``apply`` to every string inside ``value`` (a tool's JSON output, a call's arguments): the value
        with redactions made, and the combined result (the first block wins)."""
        reasons: list[str] = []
        names: list[str] = []
        blocked: list[GuardrailResult] = []

        def walk(node: Any) -> Any:
            if blocked:
                return node
            if isinstance(node, str):
                result = self.apply(node, stage)
                if result.action == "block":
                    blocked.append(result)
                elif result.action == "redact":
                    reasons.extend(r for r in result.reasons if r not in reasons)
                    names.extend(n for n in result.guardrail.split(",") if n not in names)
                    return result.text
                return node
            if isinstance(node, dict):
                return {key: walk(item) for key, item in node.items()}
            if isinstance(node, (list, tuple)):
                return [walk(item) for item in node]
            return node

        guarded = walk(value)
        if blocked:
            return value, blocked[0]
        action: Action = "redact" if reasons else "pass"
        return guarded, GuardrailResult(
            action=action, text="", reasons=tuple(reasons), guardrail=",".join(names)
        )
