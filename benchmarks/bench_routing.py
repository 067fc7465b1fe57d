"""Routing accuracy of the research router against the researcher eval's labelled depths, side by side:
the rules alone, ``auto`` (rules, then the embedded model as the classifier) and ``model`` (the classifier
for every question but sums and greetings); with the classifier's latency per question, and the tokens
each routing is expected to spend against researching every question deep (estimates:
``deep_tokens_estimate`` for deep, a shallow pass's one writer for shallow, nothing for direct).

Run: ``.venv/bin/python -m benchmarks.bench_routing [--model local:qwen2.5-coder-0.5b] [--rules-only]``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from collections import Counter
from pathlib import Path
from typing import Any, cast

from shopfloor.config import load_settings
from shopfloor.connectors.docs import Collection, Router, RouterMode, deep_tokens_estimate
from shopfloor.models import Message, Model, ModelRequest, resolve_model

QUESTIONS = Path(__file__).resolve().parents[1] / "examples" / "researcher" / "evals" / "questions.jsonl"
#: the researcher's settings (examples/researcher/agent.yaml and the docs connector's defaults)
SUB_QUESTIONS, PER_QUERY, PASSAGE_CHARS, PASSAGES = 3, 4, 700, 6
DEEP = deep_tokens_estimate(sub_questions=SUB_QUESTIONS, per_query=PER_QUERY, passage_chars=PASSAGE_CHARS)
COST = {"direct": 0, "shallow": PASSAGES * PASSAGE_CHARS // 4 + 500, "deep": DEEP}


def asker(model: Model) -> Any:
    async def ask(prompt: str, *, schema: dict[str, Any], system: str = "", max_tokens: int = 256) -> str:
        head = (Message(role="system", content=system),) if system else ()
        request = ModelRequest(
            messages=(*head, Message(role="user", content=prompt)), json_schema=schema, max_tokens=max_tokens
        )
        return (await model.request(request)).text

    return ask


async def measure(mode: RouterMode, items: list[dict[str, Any]], model: Model | None) -> dict[str, Any]:
    router = Router(
        mode=mode,
        ask=asker(model) if model is not None else None,
        collections=[Collection(name="python-tutorial", description="The Python Tutorial")],
    )
    right: Counter[str] = Counter()
    total: Counter[str] = Counter()
    confused: Counter[tuple[str, str]] = Counter()
    seconds: list[float] = []
    tokens = 0
    for item in items:
        started = time.perf_counter()
        route = await router.route(item["input"])
        if route.by == "model":
            seconds.append(time.perf_counter() - started)
        labelled = item["expected"]["depth"]
        total[labelled] += 1
        right[labelled] += route.depth == labelled
        if route.depth != labelled:
            confused[(labelled, route.depth)] += 1
        tokens += COST[route.depth]
    return {
        "mode": mode,
        "accuracy": sum(right.values()) / len(items),
        "by_depth": {depth: f"{right[depth]}/{total[depth]}" for depth in ("direct", "shallow", "deep")},
        "misrouted": {f"{a}->{b}": n for (a, b), n in sorted(confused.items())},
        "classifier_s": sum(seconds) / len(seconds) if seconds else None,
        "tokens": tokens,
    }


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--model", default="local:qwen2.5-coder-0.5b")
    parser.add_argument("--rules-only", action="store_true")
    parser.add_argument("--modes", default="auto,model", help="the classifier's modes to measure")
    args = parser.parse_args()
    items = [json.loads(line) for line in QUESTIONS.read_text().splitlines() if line.strip()]
    rows = [await measure("rules", items, None)]
    if not args.rules_only:
        model = resolve_model(args.model, load_settings())
        await model.aload()
        try:
            for mode in args.modes.split(","):
                rows.append(await measure(cast(RouterMode, mode), items, model))
        finally:
            await model.aclose()
    deep = DEEP * len(items)
    print(f"{len(items)} labelled questions; always deep: about {deep} tokens (estimated)")
    print(
        f"{'router':<7} {'accuracy':>8} {'direct':>7} {'shallow':>8} {'deep':>5} {'classify s':>10} "
        f"{'tokens':>7} {'vs deep':>7}  misrouted"
    )
    for row in rows:
        by = row["by_depth"]
        latency = f"{row['classifier_s']:.2f}" if row["classifier_s"] is not None else "-"
        print(
            f"{row['mode']:<7} {row['accuracy']:>8.2f} {by['direct']:>7} {by['shallow']:>8} {by['deep']:>5} "
            f"{latency:>10} {row['tokens']:>7} {row['tokens'] / deep:>7.2f}  {row['misrouted']}"
        )


if __name__ == "__main__":
    asyncio.run(main())
