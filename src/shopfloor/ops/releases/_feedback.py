"""What users said about runs, as dataset items of the evaluation harness (its JSONL format: ``id``,
``input``, ``expected``, ``metadata``, ``tags``): so a reported failure becomes a regression test.

A run rated -1 or given a correction becomes one item: its task is the input, the correction (when
given) the expected answer; a bad rating without a correction keeps the answer it gave in the metadata,
tagged ``failure`` for a scorer or a person to judge. A positive rating without a correction teaches
nothing new and is left out.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from shopfloor.ops.releases._store import Feedback
from shopfloor.runtime import RunRecord

__all__ = ["feedback_items"]


def feedback_items(feedback: list[Feedback], run: Callable[[str], RunRecord | None]) -> list[dict[str, Any]]:
    """One dataset item per run with a correction or a bad rating (the newest feedback of a run wins);
    ``run`` finds a run's record (None: pruned or gone, left out)."""
    newest: dict[str, Feedback] = {}
    for item in sorted(feedback, key=lambda f: f.at):
        if item.correction is not None or item.rating < 0:
            newest[item.run_id] = item
    items = []
    for run_id, item in newest.items():
        record = run(run_id)
        if record is None:
            continue
        entry: dict[str, Any] = {
            "id": f"feedback-{run_id}",
            "input": record.task,
            "metadata": {
                "run_id": run_id,
                "release": item.release,
                "rating": item.rating,
                "comment": item.comment,
                "answer": record.output,
                "status": record.status,
                "author": item.author,
            },
            "tags": ["feedback", "correction" if item.correction is not None else "failure"],
        }
        if item.correction is not None:
            entry["expected"] = item.correction
        items.append(entry)
    return items
