"""The researcher suite's own scorers (``custom``), read from the research tool's recorded output.

- ``correct``: every fact group of the item (each a list of alternatives, written from the documents)
  appears in the answer's text, sources list left out.
- ``citations``: citation precision, the share of the answer's sentences whose cited passage holds at
  least 60% of the sentence's content words (a lexical check of its own, stricter than and independent
  of the verifier's embedding check); citation recall, the share of the item's gold documents the answer
  cites; and ``kept``, the share of the writer's sentences the verifier kept. An answer given direct
  (without documents) has none of them measured, an item with no gold documents no recall.
- ``routing``: the router's depth is the item's labelled depth (``direct``, ``shallow`` or ``deep``).
"""

from __future__ import annotations

from typing import Any

from shopfloor.connectors.docs import content_words

__all__ = ["SUPPORT", "citations", "correct", "research_output", "routing"]

#: the share of a sentence's content words its passage must hold for the citation to count
SUPPORT = 0.6


def research_output(case: Any) -> dict[str, Any] | None:
    """The last research call's output, or None when the run made none that succeeded."""
    for call in reversed(case.calls):
        if call.tool.endswith("__research") and call.error is None and isinstance(call.output, dict):
            return dict(call.output)
    return None


def correct(case: Any) -> bool:
    output = research_output(case)
    answer = str(output["answer"]) if output is not None else (case.output or "")
    body = answer.split("\n\nSources:", 1)[0].lower()
    facts = case.item.expected["facts"]
    return all(any(alt.lower() in body for alt in group) for group in facts)


def citations(case: Any) -> dict[str, float | None]:
    output = research_output(case)
    if output is None:
        return {"precision": 0.0, "recall": 0.0, "kept": 0.0}
    if output.get("depth") == "direct":  # answered without documents: it cites and keeps nothing to measure
        return {"precision": None, "recall": None, "kept": None}
    text = {source["id"]: source["text"] for source in output.get("sources", [])}
    claims = output.get("claims", [])
    supported = 0
    for claim in claims:
        words = content_words(claim["sentence"])
        passage = content_words(text.get(claim["cited"], ""))
        if words and len(words & passage) / len(words) >= SUPPORT:
            supported += 1
    gold = set(case.item.expected["docs"])
    cited = {source["doc"] for source in output.get("sources", [])}
    written = len(claims) + len(output.get("removed", []))
    return {
        # an answer that cites nothing claims nothing: its precision is not a miss
        "precision": supported / len(claims) if claims else 1.0,
        "recall": len(gold & cited) / len(gold) if gold else None,
        "kept": len(claims) / written if written else 0.0,
    }


def routing(case: Any) -> bool:
    output = research_output(case)
    return output is not None and output.get("route", {}).get("depth") == case.item.expected["depth"]
