"""The console's rendering helpers on their own: Markdown sanitised, waterfalls and metric series
computed from real records, bar charts handed to the charting library."""

from __future__ import annotations

from shopfloor.gateway.console import markdown_html, waterfall
from shopfloor.gateway.console._charts import BarChart
from shopfloor.gateway.console._metrics import metric_series, of_release
from shopfloor.gateway.console._workspaces import side_by_side
from shopfloor.telemetry import RUN_ID, SpanRecord, compute_metrics


def test_markdown_keeps_structure_and_drops_what_could_run() -> None:
    html = str(
        markdown_html(
            "# T\n\n<script>alert(1)</script>\n\n[a](javascript:alert(1)) [b](https://example.org)"
            "\n\n![x](https://example.org/x.png)\n\n*e* `c`\n"
        )
    )
    assert "<h1>T</h1>" in html and "<em>e</em>" in html and "<code>c</code>" in html
    assert "<script>" not in html and "&lt;script&gt;" in html
    assert 'href="javascript' not in html
    assert '<a href="https://example.org" rel="noopener noreferrer nofollow">b</a>' in html
    assert "<img" not in html  # nothing is fetched from elsewhere


def _span(span_id: str, parent: str | None, start: int, end: int, name: str) -> SpanRecord:
    return SpanRecord(
        trace_id="0" * 32, span_id=span_id, parent_span_id=parent, name=name, start_ns=start, end_ns=end
    )


def test_waterfall_places_spans_by_time_and_depth() -> None:
    rows, height = waterfall(
        [
            _span("b" * 16, "a" * 16, 500, 1000, "chat"),
            _span("a" * 16, None, 0, 1000, "invoke_agent x"),
            _span("c" * 16, "b" * 16, 600, 700, "execute_tool t"),
        ]
    )
    assert [(r.name, r.depth, r.x, r.width) for r in rows] == [
        ("invoke_agent x", 0, 0, 1000),
        ("chat", 1, 500, 500),
        ("execute_tool t", 2, 600, 100),
    ]
    assert height == 3 * 22 and waterfall([]) == ([], 0)


def test_metric_series_skips_empty_buckets() -> None:
    empty = compute_metrics([])
    series = {s.name: s for s in metric_series([empty, empty, empty], [10.0, 20.0, 30.0])}
    assert series["runs"].values == (0.0, 0.0, 0.0) and series["completion rate"].values == (None, None, None)
    assert series["completion rate"].latest is None
    # what the charting library is handed: a time axis and the values, a gap where none was measured
    assert series["completion rate"].chart() == {
        "name": "completion rate",
        "unit": "%",
        "x": [10.0, 20.0, 30.0],
        "y": [None, None, None],
    }


def test_side_by_side_aligns_changed_lines() -> None:
    rows = side_by_side("a\nb\nc\n", "a\nB\nc\nd\n")
    assert [(r.kind, r.old, r.new) for r in rows] == [
        ("ctx", "a", "a"),
        ("chg", "b", "B"),
        ("ctx", "c", "c"),
        ("add", None, "d"),
    ]
    assert [(r.kind, r.old_no, r.new_no) for r in side_by_side("x\n", "")] == [("del", 1, None)]


def test_of_release_keeps_the_spans_of_the_runs_that_ran_its_files() -> None:
    def span(span_id: str, run_id: str, parent: str | None, **attributes: str) -> SpanRecord:
        return SpanRecord(
            trace_id="a" * 32,
            span_id=span_id,
            parent_span_id=parent,
            name="x",
            start_ns=0,
            end_ns=1,
            attributes={RUN_ID: run_id, **attributes},
        )

    spans = [
        span("1" * 16, "old", None, **{"shopfloor.agent.digest": "sha256:old"}),
        span("2" * 16, "old", "1" * 16),
        span("3" * 16, "new", None, **{"shopfloor.agent.digest": "sha256:new"}),
        span("4" * 16, "new", "3" * 16),
    ]
    assert [s.span_id for s in of_release(spans, "sha256:new")] == ["3" * 16, "4" * 16]
    assert of_release(spans, "sha256:other") == []


def test_bar_chart_groups_a_bar_per_series_and_leaves_gaps() -> None:
    chart = BarChart.of("Means", "metric", {"exact": {"A": 0.25, "B": 1.0}, "f1": {"B": 0.5}, "empty": {}})
    assert chart.series == ("A", "B")
    assert chart.rows == (("exact", (0.25, 1.0)), ("f1", (None, 0.5)), ("empty", (None, None)))
    # what the charting library is handed: a group per label, a bar per series in each
    assert chart.chart() == {
        "kind": "bars",
        "name": "Means",
        "group": "metric",
        "labels": ["exact", "f1", "empty"],
        "series": [{"label": "A", "y": [0.25, None, None]}, {"label": "B", "y": [1.0, 0.5, None]}],
    }
    assert BarChart.of("Nothing", "metric", {}).chart()["series"] == []


def test_metric_series_charts_each_components_latency_and_counts_timeouts_as_faults() -> None:
    def span(span_id: str, name: str, seconds: float, status: str = "ok") -> SpanRecord:
        return SpanRecord(
            trace_id="0" * 32,
            span_id=span_id,
            parent_span_id=None,
            name=name,
            start_ns=0,
            end_ns=int(seconds * 1e9),
            status=status,
            attributes={"error.type": "timeout"} if status == "error" else {},
        )

    first = compute_metrics([span("a" * 16, "chat m", 2.0), span("b" * 16, "execute_tool t", 0.5, "error")])
    second = compute_metrics([span("c" * 16, "chat m", 4.0)])
    components = [c.component for c in first.components]
    series = {s.name: s for s in metric_series([first, second], [10.0, 20.0], components)}
    assert series["model latency p50"].values == (2.0, 4.0) and series["model latency p50"].unit == "s"
    assert series["tool latency p50"].values == (0.5, None)  # no tool call in the second bucket
    # the tool's failure is counted in the fault rate whether it was a fault or a timeout
    assert series["fault rate"].values == (50.0, 0.0)
    assert "run latency p50" in series and "run latency p50" not in [f"{c} latency p50" for c in components]
