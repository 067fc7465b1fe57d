"""The analyst suite's own scorer (``custom``, ``scoring.py:correct``): the expected figure within
1% (or to the data's own rounding) and, for "which ..." questions, the expected group named.

``python -m examples.analyst.evals.scoring`` writes ``questions.jsonl`` from ``questions.py``, whose
answers pandas computes from the data; a test checks the file is up to date.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

__all__ = ["correct", "is_correct", "numbers_in", "write_dataset"]

_NUMBER = re.compile(r"-?\d+(?:,\d{3})*(?:\.\d+)?")
MONTHS = (
    "january",
    "february",
    "march",
    "april",
    "may",
    "june",
    "july",
    "august",
    "september",
    "october",
    "november",
    "december",
)
DATASET = Path(__file__).with_name("questions.jsonl")


def numbers_in(text: str) -> list[float]:
    return [float(m.replace(",", "")) for m in _NUMBER.findall(text)]


def is_correct(answer: str, truth: dict[str, Any]) -> bool:
    """The expected figure appears (within 1% or 0.01), and the expected group where one is asked for."""
    value = float(truth["value"])
    figure = any(abs(n - value) <= max(0.01 * abs(value), 0.011) for n in numbers_in(answer))
    if "group" not in truth:
        return figure
    group = truth["group"]
    text = answer.lower()
    if isinstance(group, int) and not isinstance(group, bool):
        named = 1 <= group <= 12 and MONTHS[group - 1] in text
        return figure and (group in numbers_in(answer) or named)
    return figure and str(group).lower() in text


def correct(case: Any) -> bool:
    """The harness's custom scorer: ``case`` is a ``shopfloor.evals.Case``."""
    return bool(case.output) and is_correct(case.output, case.item.expected)


def dataset_lines() -> list[str]:
    from examples.analyst.evals.questions import QUESTIONS, expected

    return [
        json.dumps(
            {
                "id": q.id,
                "input": q.text,
                "expected": expected(q),
                "tags": ["single" if q.single else "multi"],
                "metadata": {"file": q.file, "kind": q.kind},
            }
        )
        for q in QUESTIONS
    ]


def write_dataset() -> None:
    DATASET.write_text("\n".join(dataset_lines()) + "\n")


if __name__ == "__main__":
    write_dataset()
