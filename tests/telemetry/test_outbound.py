"""Every span is redacted on its way to the trace store and to every exporter, content or not."""

from __future__ import annotations

import json

import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from tel_helpers import run_spans

from shopfloor.config import Settings
from shopfloor.telemetry import REDACTED, configure_telemetry, mark_error, run_scope, span

STRIPE = "sk_live_" + "Zz9Yy8Xx7Ww6Vv5Uu4"
TOKEN = "hf_" + "Aa1Bb2Cc3Dd4Ee5Ff6Gg7Hh8"


@pytest.mark.parametrize("record_content", [False, True])
async def test_status_events_and_attributes_are_redacted(settings: Settings, record_content: bool) -> None:
    exported = InMemorySpanExporter()
    with configure_telemetry(
        settings, extra_exporters=[exported], record_content=record_content
    ) as telemetry:
        with run_scope("run-secret"):
            with span("upstream", attributes={"shopfloor.note": f"key {STRIPE}"}) as reported:
                mark_error(reported, "execution", f"upstream refused {TOKEN}")  # a tool's error
            with pytest.raises(RuntimeError), span("crash"):
                raise RuntimeError(f"connect to https://bob:{STRIPE}@db.internal failed")
        stored = run_spans(telemetry, "run-secret")
    sent = exported.get_finished_spans()
    assert len(sent) == len(stored) == 2
    text = json.dumps(
        [
            [
                s.name,
                dict(s.attributes or {}),
                s.status.description,
                [dict(e.attributes or {}) for e in s.events],
            ]
            for s in sent
        ]
    ) + json.dumps([vars(s) for s in stored], default=str)
    assert STRIPE not in text and TOKEN not in text, text
    assert f"upstream refused {REDACTED}" in text and f"https://bob:{REDACTED}@db.internal" in text
