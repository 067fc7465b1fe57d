"""How the console turns hostile data into HTML: Jinja2 with autoescape everywhere, Markdown rendered
without raw HTML and then sanitised by ``nh3`` (ammonia), trace waterfalls as server-side SVG.

Everything the console shows comes from models, tools, files and users: no template marks a value
``safe`` except the output of ``markdown_html`` (sanitised here) and nothing else.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import nh3
from jinja2 import Environment, PackageLoader, StrictUndefined
from markdown_it import MarkdownIt
from markupsafe import Markup

from shopfloor.gateway.console._proposals import edit_fields
from shopfloor.telemetry import SpanRecord

__all__ = ["WaterfallRow", "make_environment", "markdown_html", "waterfall"]

_markdown = MarkdownIt("commonmark", {"html": False, "linkify": False}).enable("table")
#: the tags a rendered report may keep (no images from elsewhere: the console works offline and leaks
#: nothing by fetching a URL a model wrote)
_TAGS = {
    "a", "blockquote", "br", "code", "em", "h1", "h2", "h3", "h4", "h5", "h6", "hr", "li", "ol", "p",
    "pre", "strong", "table", "tbody", "td", "th", "thead", "tr", "ul", "del",
}  # fmt: skip


def markdown_html(text: str) -> Markup:
    """``text`` (Markdown) as sanitised HTML: raw HTML in the source is shown as text, and what the
    renderer produced passes nh3's allow-list (no script, no event handler, no ``javascript:`` URL)."""
    rendered = _markdown.render(text)
    cleaned = nh3.clean(
        rendered,
        tags=_TAGS,
        attributes={"a": {"href", "title"}, "th": {"align"}, "td": {"align"}},
        url_schemes={"http", "https", "mailto"},
        link_rel="noopener noreferrer nofollow",
    )
    return Markup(cleaned)  # sanitised by nh3 just above: the one value marked safe


@dataclass(frozen=True, kw_only=True)
class WaterfallRow:
    """One span of a trace as a bar: offsets in thousandths of the trace's duration."""

    name: str
    depth: int
    x: int
    width: int
    seconds: float
    status: str
    y: int


_ROW = 22


def waterfall(spans: Sequence[SpanRecord], *, limit: int = 500) -> tuple[list[WaterfallRow], int]:
    """The first ``limit`` spans of a trace in start order, indented by depth, and the SVG's height."""
    if not spans:
        return [], 0
    ordered = sorted(spans, key=lambda s: (s.start_ns, s.span_id))[:limit]
    start = min(s.start_ns for s in ordered)
    total = max(max(s.end_ns for s in ordered) - start, 1)
    parents = {s.span_id: s.parent_span_id for s in ordered}

    def depth(span_id: str) -> int:
        level, parent = 0, parents.get(span_id)
        while parent in parents and level < 64:
            level, parent = level + 1, parents.get(parent)
        return level

    rows = []
    for index, span in enumerate(ordered):
        x = int((span.start_ns - start) * 1000 / total)
        width = max(2, int((span.end_ns - span.start_ns) * 1000 / total))
        rows.append(
            WaterfallRow(
                name=span.name,
                depth=depth(span.span_id),
                x=x,
                width=min(width, 1000 - x) if x < 1000 else 2,
                seconds=span.duration,
                status=span.status,
                y=index * _ROW,
            )
        )
    return rows, len(rows) * _ROW


def _when(value: float | None) -> str:
    if not value:
        return ""
    return dt.datetime.fromtimestamp(value, tz=dt.UTC).strftime("%Y-%m-%d %H:%M:%S")


def _seconds(value: float | None) -> str:
    if value is None:
        return ""
    return f"{value * 1000:.0f} ms" if value < 1 else f"{value:.2f} s"


def _pretty(value: Any, limit: int = 20_000) -> str:
    if isinstance(value, Mapping):
        value = dict(value)
    text = value if isinstance(value, str) else json.dumps(value, indent=2, default=str, ensure_ascii=False)
    return text if len(text) <= limit else text[:limit] + f"\n… ({len(text) - limit} more characters)"


def make_environment() -> Environment:
    """The console's templates (shipped in the package), every value escaped unless marked."""
    env = Environment(
        loader=PackageLoader("shopfloor.gateway.console", "templates"),
        autoescape=True,
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["when"] = _when
    env.filters["seconds"] = _seconds
    env.filters["pretty"] = _pretty
    env.filters["zip"] = zip
    env.globals["edit_fields"] = edit_fields
    return env
