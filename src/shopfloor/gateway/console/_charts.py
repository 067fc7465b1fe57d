"""Bar charts the browser draws with the console's charting library (uPlot, vendored from npm, its
``paths.bars``): a page hands the chart its values as JSON in a figure's ``data-chart`` attribute (escaped
by the template) and shows the same values in a table beside it (``_bar_chart.html``), which is all a
browser without script, or a console whose library was not vendored yet, shows."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

__all__ = ["BarChart"]


@dataclass(frozen=True, kw_only=True)
class BarChart:
    """Bars in groups: a group per label (a run status, a metric), a bar per series in each (an
    evaluation's mean; A and B side by side); None where a series has no value for a label."""

    name: str
    #: what the labels name ("status", "metric"): the legend's heading of the group under the cursor
    group: str
    series: tuple[str, ...]
    rows: tuple[tuple[str, tuple[float | None, ...]], ...]

    @classmethod
    def of(cls, name: str, group: str, rows: Mapping[str, Mapping[str, float | None]]) -> BarChart:
        """The chart of ``rows`` (label -> series -> value), labels and series in the order first met."""
        series = tuple(dict.fromkeys(s for row in rows.values() for s in row))
        return cls(
            name=name,
            group=group,
            series=series,
            rows=tuple((label, tuple(row.get(s) for s in series)) for label, row in rows.items()),
        )

    def chart(self) -> dict[str, Any]:
        """What the page's script hands the charting library (``data-chart``, escaped as JSON)."""
        return {
            "kind": "bars",
            "name": self.name,
            "group": self.group,
            "labels": [label for label, _ in self.rows],
            "series": [
                {"label": s, "y": [values[i] for _, values in self.rows]} for i, s in enumerate(self.series)
            ],
        }
