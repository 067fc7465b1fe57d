"""An evaluation as one self-contained HTML page (inline SVG plots, no script, no CDN) and as JSON.

Everything a model or a dataset wrote is escaped; each item links to the commands that show its
run's trace and workspace.
"""

from __future__ import annotations

import html
from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import quote

from shopfloor.evals._benchmarks import benchmark_tables
from shopfloor.evals._stats import item_values
from shopfloor.evals._store import EvalItemRow, EvalRecord

__all__ = ["report_html", "report_json"]

_STYLE = """
body{font:14px system-ui,sans-serif;margin:2em;color:#222;max-width:1100px}
table{border-collapse:collapse;margin:1em 0}
td,th{border:1px solid #ccc;padding:3px 8px;text-align:left;vertical-align:top}
.pass{color:#17803d}.fail{color:#b3261e}.warn{color:#9a6700}code{font-size:12px}
svg{background:#fafafa;border:1px solid #eee;margin:4px}.small{font-size:12px;color:#555}
"""


def report_json(
    record: EvalRecord, rows: Sequence[EvalItemRow], comparison: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    return {
        "evaluation": record.to_dict(),
        "items": [
            {
                "item": row.item_id,
                "repeat": row.repeat,
                "status": row.status,
                "reason": row.reason,
                "run_id": row.run_id,
                "case": row.case,
                "metrics": row.metrics,
            }
            for row in rows
        ],
        "benchmarks": benchmark_tables(record.config, rows),
        "comparison": comparison,
    }


def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.3g}"
    return _e(value)


def _bars(
    title: str,
    labels: Sequence[str],
    values: Sequence[float],
    *,
    width: int = 520,
    scale: float | None = None,
) -> str:
    """A horizontal bar chart as inline SVG."""
    top = scale or max([*values, 1e-9])
    row = 22
    height = 30 + row * len(labels)
    parts = [
        f'<svg width="{width}" height="{height}" role="img" aria-label="{_e(title)}">',
        f'<text x="6" y="16" font-weight="bold">{_e(title)}</text>',
    ]
    for n, (label, value) in enumerate(zip(labels, values, strict=True)):
        y = 26 + n * row
        length = max(0.0, value / top) * (width - 230)
        parts.append(f'<text x="6" y="{y + 14}" font-size="12">{_e(label[:28])}</text>')
        parts.append(f'<rect x="180" y="{y + 3}" width="{length:.1f}" height="{row - 8}" fill="#4c78a8"/>')
        parts.append(f'<text x="{184 + length:.1f}" y="{y + 14}" font-size="12">{value:.3g}</text>')
    parts.append("</svg>")
    return "".join(parts)


def _histogram(title: str, values: Sequence[float], *, bins: int = 10) -> str:
    if not values:
        return ""
    low, high = min(values), max(values)
    span = (high - low) or 1.0
    counts = [0] * bins
    for value in values:
        counts[min(bins - 1, int((value - low) / span * bins))] += 1
    labels = [f"{low + span * i / bins:.3g}-{low + span * (i + 1) / bins:.3g}" for i in range(bins)]
    return _bars(title, labels, [float(c) for c in counts])


def _tr(cells: Sequence[str], *, tag: str = "td", css: Sequence[str] = ()) -> str:
    """A table row of cells that are HTML already (escape what goes in them)."""
    classes = list(css) + [""] * (len(cells) - len(css))
    return (
        "<tr>"
        + "".join(
            f"<{tag} class='{c}'>{cell}</{tag}>" if c else f"<{tag}>{cell}</{tag}>"
            for cell, c in zip(cells, classes, strict=True)
        )
        + "</tr>"
    )


def _head(*names: str) -> str:
    return "<table>" + _tr([_e(n) for n in names], tag="th")


def _ci(ci: Sequence[float] | None) -> str:
    return "-" if not ci else f"{ci[0]:.3g} to {ci[1]:.3g}"


def _gates(gates: Sequence[Mapping[str, Any]]) -> list[str]:
    out = ["<h2>Gates</h2>", _head("gate", "value", "baseline", "result")]
    for gate in gates:
        css = "pass" if gate["passed"] else "warn" if gate["level"] == "warn" else "fail"
        tag = f" [{gate['tag']}]" if gate.get("tag") else ""
        what = f"{gate['metric']} {gate['stat']}{tag} ({gate['level']})"
        verdict = "pass" if gate["passed"] else "; ".join(gate["problems"])
        cells = [_e(what), _fmt(gate["value"]), _fmt(gate["baseline"]), _e(verdict)]
        out.append(_tr(cells, css=["", "", "", css]))
    return [*out, "</table>"]


def _plots(summary: Mapping[str, Any], rows: Sequence[EvalItemRow]) -> list[str]:
    out = ["<h2>Plots</h2>"]
    for name, per_item in sorted(item_values(rows).items()):
        values = [float(m["value"]) for ms in per_item.values() for m in ms if m["value"] is not None]
        out.append(_histogram(f"{name}: distribution over items", values))
    for name in summary.get("metrics", {}):
        tags = {
            tag: stats[name]["mean"]
            for tag, stats in (summary.get("tags") or {}).items()
            if stats.get(name, {}).get("mean") is not None
        }
        if tags:
            top = max(1.0, *tags.values())
            out.append(_bars(f"{name}: mean per tag", list(tags), list(tags.values()), scale=top))
    out.append(_histogram("latency of the runs (s)", summary.get("latencies") or []))
    return out


def _share(share: Mapping[str, Any]) -> str:
    missing = f", {share['missing']} missing" if share.get("missing") else ""
    return f"{_fmt(share.get('mean'))} <span class='small'>({share.get('items', 0)} items{missing})</span>"


def _benchmarks(tables: Mapping[str, Any], model: str) -> list[str]:
    out: list[str] = []
    bfcl = tables.get("bfcl")
    if bfcl:
        categories = list(bfcl["categories"])
        source = bfcl["published"]["source"]
        out += [
            "<h2>BFCL accuracy per category, beside the published figures</h2>",
            _head("model", *categories),
            _tr(
                [f"<b>{_e(model)}</b> (this evaluation)"]
                + [_share(bfcl["categories"][c]) for c in categories]
            ),
        ]
        for published in bfcl["published"]["models"]:
            cells = [_fmt(published["accuracy"].get(c)) for c in categories]
            out.append(_tr([_e(published["model"]), *cells]))
        out += [
            "</table>",
            f"<p class='small'>Published: {_e(source['title'])}, "
            f"<a href='{_e(source['url'])}'>{_e(source['url'])}</a>. {_e(source['note'])}</p>",
        ]
    dojo = tables.get("agentdojo")
    if dojo:
        out += [
            "<h2>AgentDojo per suite</h2>",
            _head("suite", "utility (no attack)", "utility under attack", "attack success rate"),
        ]
        for suite, parts in dojo["suites"].items():
            cells = [_share(parts[p]) for p in ("utility", "utility_under_attack", "attack_success")]
            out.append(_tr([_e(suite), *cells]))
        out.append("</table><p class='small'>Attack success: lower is better.</p>")
    return out


def _comparison(comparison: Mapping[str, Any]) -> list[str]:
    out = [
        f"<h2>Comparison: {_e(comparison.get('verdict'))}</h2>",
        _head("metric", "A", "B", "mean difference", "95% CI", "sign test p", "flipped", "verdict"),
    ]
    for name, c in comparison["metrics"].items():
        flips = ", ".join(
            f"{f['item']} ({'pass to fail' if f['from'] else 'fail to pass'})" for f in c["flipped"]
        )
        values = (c["mean_a"], c["mean_b"], c["mean_difference"])
        cells = [_e(name), *map(_fmt, values), _ci(c.get("ci95")), _fmt(c["sign_test_p"])]
        out.append(_tr([*cells, _e(flips) or "-", _e(c["verdict"])]))
    return [*out, "</table>"]


def _items(rows: Sequence[EvalItemRow], server: str | None) -> list[str]:
    out = ["<h2>Items</h2>", _head("item", "#", "status", "answer", "metrics", "run")]
    base = _e(server.rstrip("/")) if server else None
    for row in rows:
        case = row.case or {}
        scores = ", ".join(f"{m['name']}={_fmt(m['value'])}" for m in row.metrics)
        run = _e(quote(row.run_id or "", safe=""))
        served = (
            f"<br><a href='{base}/v1/runs/{run}/trace'>trace</a> · "
            f"<a href='{base}/v1/workspaces/run-{run}/log'>workspace</a>"
            if base
            else ""
        )
        links = (
            f"<a id='{_e(row.item_id)}-{row.repeat}'></a><code>{run[:12]}</code><br><span class='small'>"
            f"trace: <code>shopfloor trace {run}</code><br>"
            f"workspace: <code>shopfloor ws log run-{run}</code>{served}</span>"
            if run
            else "-"
        )
        css = "pass" if row.status == "done" else "fail"
        status = _e(row.status) + (f"<br><span class='small'>{_e(row.reason)}</span>" if row.reason else "")
        answer = _e((case.get("output") or "")[:300])
        cells = [_e(row.item_id), str(row.repeat), status, answer, _e(scores), links]
        out.append(_tr(cells, css=["", "", css]))
    return [*out, "</table>"]


def report_html(
    record: EvalRecord,
    rows: Sequence[EvalItemRow],
    comparison: Mapping[str, Any] | None = None,
    *,
    server: str | None = None,
) -> str:
    """The report page; with ``server`` (a Shopfloor server's URL) each item links to its run's trace
    and workspace there, besides the commands that show them locally."""
    summary = record.summary or {}
    facts = [
        f"eval {record.eval_id}",
        f"agent {record.agent_digest}",
        f"suite {record.suite_digest}",
        f"dataset {record.dataset_digest}",
        f"model {record.model or '(the agent spec)'}",
        f"repeat {record.repeat}",
    ]
    out = [
        "<!doctype html><html><head><meta charset='utf-8'>",
        f"<title>eval {_e(record.suite)} {_e(record.eval_id[:12])}</title>",
        f"<style>{_STYLE}</style></head><body>",
        f"<h1>Evaluation of {_e(record.agent)} on {_e(record.suite)}</h1>",
        f"<p class='small'>{_e(' · '.join(facts))}</p>",
        "<h2>Metrics</h2>",
        _head("metric", "mean", "95% CI", "pass rate", "pass@k", "pass^k", "items", "missing"),
    ]
    for name, stats in summary.get("metrics", {}).items():
        values = [stats.get(key) for key in ("mean", "pass_rate", "pass@k", "pass^k")]
        cells = [_e(name), _fmt(values[0]), _ci(stats.get("ci95")), *map(_fmt, values[1:])]
        out.append(_tr([*cells, _fmt(stats.get("items")), _fmt(stats.get("missing"))]))
    out.append("</table>")
    for judge, agreement in (summary.get("judge_agreement") or {}).items():
        out.append(
            f"<p>judge {_e(judge)} agrees with {_e(agreement['with'])} on "
            f"{_fmt(agreement['agreement'])} of {agreement['items']} items</p>"
        )
    if summary.get("gates"):
        out += _gates(summary["gates"])
    out += _benchmarks(benchmark_tables(record.config, rows), record.model or record.agent)
    out += _plots(summary, rows)
    if comparison:
        out += _comparison(comparison)
    out += _items(rows, server)
    out.append("</body></html>")
    return "\n".join(out)
