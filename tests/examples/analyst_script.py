"""A scripted model for the analyst (``function:analyst_script:script``): it answers every staged
question of the two-phase loop the way a good model would for the Seattle rain question; a property
the loop fixed to the one option its task names (an enum of one) it answers with that, as the
grammar would make any model."""

from __future__ import annotations

from typing import Any

from shopfloor.models import ModelRequest

CHOICES = {
    "tool": "data-analysis",
    "operation": "best_group",
    "file": "seattle-weather.csv",
    "where_match": "date.year == 2015",
}
ARGS = {"group_by": "date.month", "stat": "sum", "column": "precipitation", "order": "max"}


def script(request: ModelRequest) -> dict[str, Any]:
    assert request.json_schema is not None, "the analyst's loop constrains every reply"
    props = request.json_schema["properties"]
    reply: dict[str, Any] = {}
    for name, prop in props.items():
        wanted = CHOICES.get(name, ARGS.get(name))
        options = prop.get("enum")
        if isinstance(options, list) and len(options) == 1:
            wanted = options[0]
        assert options is None or wanted in options, f"{name}: {wanted!r} not offered in {options}"
        reply[name] = wanted
    return reply
