"""A run's spans as a tree: a waterfall table for the terminal and nested JSON.

Each row shows where a span starts and how long it takes as a bar on the run's
time line, with tokens and cost for model calls and failures in red.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from rich.table import Table
from rich.text import Text

from shopfloor.telemetry._conventions import ERROR_TYPE, INPUT_TOKENS, OUTPUT_TOKENS
from shopfloor.telemetry._metrics import Prices, span_cost
from shopfloor.telemetry._records import SpanRecord

__all__ = ["SpanNode", "span_tree", "tree_json", "waterfall"]


@dataclass(frozen=True, kw_only=True)
class SpanNode:
    span: SpanRecord
    children: tuple[SpanNode, ...]


def span_tree(spans: Sequence[SpanRecord]) -> list[SpanNode]:
    """The spans as trees (several where a run spans several traces, e.g. after a recovery)."""
    ids = {s.span_id for s in spans}
    children: dict[str | None, list[SpanRecord]] = {}
    for span in sorted(spans, key=lambda s: (s.start_ns, s.end_ns)):
        parent = span.parent_span_id if span.parent_span_id in ids else None
        children.setdefault(parent, []).append(span)

    def build(span: SpanRecord) -> SpanNode:
        return SpanNode(span=span, children=tuple(build(c) for c in children.get(span.span_id, [])))

    return [build(root) for root in children.get(None, [])]


def _seconds(value: float) -> str:
    return f"{value * 1000:.1f} ms" if value < 1 else f"{value:.2f} s"


def _tokens(span: SpanRecord) -> str:
    attrs = span.attributes
    if INPUT_TOKENS not in attrs and OUTPUT_TOKENS not in attrs:
        return ""
    return f"{attrs.get(INPUT_TOKENS, 0)}→{attrs.get(OUTPUT_TOKENS, 0)}"


def waterfall(
    spans: Sequence[SpanRecord],
    *,
    prices: Prices | None = None,
    title: str | None = None,
    bar_width: int = 40,
) -> Table:
    table = Table(title=title, show_edge=False, pad_edge=False, expand=False)
    for name, justify in (
        ("span", "left"),
        ("start", "right"),
        ("duration", "right"),
        ("", "left"),
        ("tokens", "right"),
        ("cost", "right"),
        ("status", "left"),
    ):
        table.add_column(name, justify=justify, no_wrap=name != "status")  # type: ignore[arg-type]
    if not spans:
        return table
    begin = min(s.start_ns for s in spans)
    total = max(max(s.end_ns for s in spans) - begin, 1)

    def add(node: SpanNode, prefix: str, last: bool, depth: int) -> None:
        span = node.span
        offset = round((span.start_ns - begin) / total * bar_width)
        width = max(1, round((span.end_ns - span.start_ns) / total * bar_width))
        failed = span.status == "error"
        style = "red" if failed else "cyan"
        bar = Text(" " * min(offset, bar_width - 1)) + Text(
            "█" * min(width, bar_width - min(offset, bar_width - 1)), style=style
        )
        guide = "" if depth == 0 else prefix + ("└─ " if last else "├─ ")
        cost = span_cost(span, prices or {})
        status = ""
        if failed:
            status = str(span.attributes.get(ERROR_TYPE, "error"))
            if span.status_message:
                status += f": {span.status_message}"
        table.add_row(
            Text(guide) + Text(span.name, style="bold red" if failed else "bold" if depth == 0 else ""),
            _seconds((span.start_ns - begin) / 1e9),
            _seconds(span.duration),
            bar,
            _tokens(span),
            f"${cost:.4f}" if cost else "",
            Text(status, style="red"),
        )
        child_prefix = "" if depth == 0 else prefix + ("   " if last else "│  ")
        for i, child in enumerate(node.children):
            add(child, child_prefix, i == len(node.children) - 1, depth + 1)

    for root in span_tree(spans):
        add(root, "", True, 0)
    return table


def tree_json(spans: Sequence[SpanRecord], *, prices: Prices | None = None) -> list[dict[str, Any]]:
    def node_dict(node: SpanNode) -> dict[str, Any]:
        data = node.span.to_dict()
        cost = span_cost(node.span, prices or {})
        if cost is not None:
            data["cost_usd"] = cost
        data["children"] = [node_dict(child) for child in node.children]
        return data

    return [node_dict(root) for root in span_tree(spans)]
