"""Run the analyst on the eval questions and print task completion, numeric accuracy and latency.

    python -m examples.analyst.evals.run [--model REF] [--only single] [--limit N] [--json FILE]

Each question runs through the analyst's real environment (its workspace, the data-analysis
skill in the sandbox) with the in-memory step runner: the eval measures the agent, not the
durability layer. An answer is right when it contains the expected figure (within 1%, or to the
data's own rounding) and, for "which ..." questions, the expected group.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import sys
import time
import uuid
from pathlib import Path
from typing import Any

from examples.analyst.evals.questions import QUESTIONS, Question, expected
from shopfloor.config import load_settings
from shopfloor.runtime import compose, open_environment

ANALYST = Path(__file__).resolve().parents[1]
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


async def ask(question: Question, model: str | None) -> dict[str, Any]:
    settings = load_settings()
    services = compose(settings)
    loaded = services.load_spec(ANALYST)
    run_id = uuid.uuid4().hex
    started = time.perf_counter()
    env = await open_environment(loaded, services, run_id=run_id, model=model)
    try:
        result = await env.loop.run(question.text, run_id=run_id)
    finally:
        await env.close()
    answer = result.output or ""
    truth = expected(question)
    return {
        "id": question.id,
        "single": question.single,
        "completed": result.stop_reason == "final_answer",
        "correct": bool(answer) and is_correct(answer, truth),
        "seconds": round(time.perf_counter() - started, 2),
        "steps": len(result.steps),
        "tokens": result.usage.total,
        "answer": answer,
        "expected": truth,
        "stop_reason": result.stop_reason,
        "calls": [{"tool": s.tool, "arguments": s.arguments, "error": s.error} for s in result.steps],
    }


def summary(rows: list[dict[str, Any]]) -> dict[str, Any]:
    def rate(items: list[dict[str, Any]], key: str) -> float:
        return round(sum(1 for r in items if r[key]) / len(items), 3) if items else 0.0

    single = [r for r in rows if r["single"]]
    return {
        "questions": len(rows),
        "completion_rate": rate(rows, "completed"),
        "accuracy": rate(rows, "correct"),
        "single_aggregation_accuracy": rate(single, "correct"),
        "single_aggregation_questions": len(single),
        "mean_latency_s": round(sum(r["seconds"] for r in rows) / len(rows), 2) if rows else 0.0,
    }


async def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="model reference (default: the analyst spec's)")
    parser.add_argument("--only", choices=["single", "all"], default="all")
    parser.add_argument("--limit", type=int)
    parser.add_argument("--id", action="append", help="run only these question ids")
    parser.add_argument("--json", type=Path, help="write every answer and the summary to this file")
    args = parser.parse_args(argv)
    questions = [q for q in QUESTIONS if args.only == "all" or q.single]
    if args.id:
        questions = [q for q in questions if q.id in args.id]
    rows = []
    for question in questions[: args.limit]:
        row = await ask(question, args.model)
        rows.append(row)
        mark = "ok  " if row["correct"] else "FAIL"
        print(f"{mark} {row['seconds']:6.1f}s {question.id:26} {row['answer'][:90]!r}", flush=True)
    result = summary(rows)
    print(json.dumps(result, indent=2))
    if args.json:
        args.json.write_text(json.dumps({"summary": result, "answers": rows}, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main(sys.argv[1:])))
