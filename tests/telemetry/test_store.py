"""The local trace store on SQLite and PostgreSQL, the OTLP JSON export, JSON logs, redaction."""

from __future__ import annotations

import io
import json
import logging

import pytest
import sqlalchemy as sa
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from shopfloor.config import Settings, load_settings
from shopfloor.telemetry import (
    REDACTED,
    JsonLogFormatter,
    SpanRecord,
    Telemetry,
    TraceStore,
    open_span,
    otlp_json,
    redact,
    redact_value,
    run_scope,
    span,
    trace_store_url,
)


def _record(span_id: str, *, trace: str = "a" * 32, start: int = 0, **attrs: object) -> SpanRecord:
    return SpanRecord(
        trace_id=trace,
        span_id=span_id,
        parent_span_id=None,
        name=f"span {span_id}",
        start_ns=start,
        end_ns=start + 1000,
        attributes=dict(attrs),
    )


def _exercise(store: TraceStore) -> None:
    root = _record("0" * 15 + "1", start=10, **{"gen_ai.conversation.id": "run-1", "gen_ai.agent.name": "a1"})
    child = _record("0" * 15 + "2", start=20, **{"shopfloor.run.id": "run-1", "n": 1, "tags": ["x", "y"]})
    outside = _record("0" * 15 + "3", start=30)  # no run id: not part of any run
    other = _record("0" * 15 + "4", trace="b" * 32, start=40, **{"gen_ai.conversation.id": "run-2"})
    store.write([child, outside, root, other])
    assert [s.span_id for s in store.run_spans("run-1")] == [root.span_id, child.span_id]
    assert store.run_spans("run-1")[1] == child
    assert [s.span_id for s in store.spans(since_ns=25)] == [outside.span_id, other.span_id]
    assert [s.span_id for s in store.spans(agent="a1")] == [root.span_id, child.span_id]
    assert store.run_ids() == ["run-2", "run-1"]
    assert store.prune(before_ns=25) == 2
    assert len(store.spans()) == 2


def test_store_round_trip(sql_url: str) -> None:
    store = TraceStore(sql_url)
    assert store.engine.dialect.name == sa.make_url(sql_url).get_backend_name()
    _exercise(store)
    store.close()


def test_store_url_defaults(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    assert trace_store_url(settings) == f"sqlite:///{settings.home / 'traces.db'}"
    monkeypatch.setenv("SHOPFLOOR_DATABASE_URL", "postgresql://u@h/db")
    assert trace_store_url(load_settings()) == "postgresql://u@h/db"
    monkeypatch.setenv("SHOPFLOOR_TELEMETRY__STORE_URL", "sqlite:////tmp/x.db")
    assert trace_store_url(load_settings()) == "sqlite:////tmp/x.db"


def test_otlp_json_shape() -> None:
    record = SpanRecord(
        trace_id="ab" * 16,
        span_id="cd" * 8,
        parent_span_id="ef" * 8,
        name="chat m",
        kind="client",
        start_ns=5,
        end_ns=9,
        status="error",
        status_message="boom",
        attributes={"i": 3, "f": 0.5, "b": True, "s": "x", "l": ["stop"]},
        events=[{"name": "exception", "time_ns": 7, "attributes": {"exception.type": "E"}}],
    )
    body = otlp_json([record])
    [resource] = body["resourceSpans"]
    assert resource["resource"]["attributes"] == [
        {"key": "service.name", "value": {"stringValue": "shopfloor"}}
    ]
    [out] = resource["scopeSpans"][0]["spans"]
    assert out["traceId"] == "ab" * 16 and out["spanId"] == "cd" * 8 and out["parentSpanId"] == "ef" * 8
    assert out["kind"] == 3  # SPAN_KIND_CLIENT
    assert (out["startTimeUnixNano"], out["endTimeUnixNano"]) == ("5", "9")
    assert out["status"] == {"code": 2, "message": "boom"}
    values = {a["key"]: a["value"] for a in out["attributes"]}
    assert values == {
        "i": {"intValue": "3"},
        "f": {"doubleValue": 0.5},
        "b": {"boolValue": True},
        "s": {"stringValue": "x"},
        "l": {"arrayValue": {"values": [{"stringValue": "stop"}]}},
    }
    assert out["events"][0]["timeUnixNano"] == "7"


def test_json_logs_carry_trace_and_span_ids(telemetry: Telemetry) -> None:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonLogFormatter())
    logger = logging.getLogger("shopfloor.test.telemetry")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        logger.info("outside")
        with span("work", component="tool") as current:
            logger.info("inside %s", "span", extra={"step": 3})
            context = current.get_span_context()
    finally:
        logger.removeHandler(handler)
    outside, inside = (json.loads(line) for line in stream.getvalue().splitlines())
    assert "trace_id" not in outside
    assert inside["message"] == "inside span"
    assert inside["trace_id"] == format(context.trace_id, "032x")
    assert inside["span_id"] == format(context.span_id, "016x")
    assert inside["step"] == 3 and inside["level"] == "info"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('{"password": "hunter2", "user": "bob"}', f'{{"password": "{REDACTED}", "user": "bob"}}'),
        ("Authorization: Bearer abcdefghijklmnop", f"Authorization: Bearer {REDACTED}"),
        ("OPENAI_API_KEY=sk-abcdefghijklmnopqrstuvwx ok", f"OPENAI_API_KEY={REDACTED} ok"),
        ("key sk-proj-abcdefghijklmnopqrstuvwx", f"key {REDACTED}"),
        ("postgresql://app:s3cret@db:5432/x", f"postgresql://app:{REDACTED}@db:5432/x"),
        ("aws AKIAABCDEFGHIJKLMNOP", f"aws {REDACTED}"),
        ("gh ghp_abcdefghijklmnopqrstuvwxyz0123", f"gh {REDACTED}"),
        ("jwt eyJhbGciOi.eyJzdWIiOiIx.c2lnbmF0dXJl", f"jwt {REDACTED}"),
        ("-----BEGIN RSA PRIVATE KEY-----\nMIIE\n-----END RSA PRIVATE KEY-----", REDACTED),
        ("cut: -----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBg+/=", f"cut: {REDACTED}"),
        ("stripe sk_live_51HxAbCdEfGh12345", f"stripe {REDACTED}"),
        ("stripe rk_live_51HxAbCdEfGh12345", f"stripe {REDACTED}"),
        ("stripe pk_live_51HxAbCdEfGh12345", f"stripe {REDACTED}"),
        ("stripe sk_test_51HxAbCdEfGh12345", f"stripe {REDACTED}"),
        ("hf hf_AbCdEfGhIjKlMnOpQrStUvWxYz012345", f"hf {REDACTED}"),
        ("gh gho_abcdefghijklmnopqrstuvwxyz0123", f"gh {REDACTED}"),
        ("gh github_pat_11ABCDEFG0123456789_abcdefghij", f"gh {REDACTED}"),
        ("slack xoxb-1234567890-abcdefghijkl", f"slack {REDACTED}"),
        ("slack xoxp-1234567890-abcdefghijkl", f"slack {REDACTED}"),
        ("google AIzaSyA1234567890abcdefghijklmnopqrstuv", f"google {REDACTED}"),
        ("api_key=abc123&x=1", f"api_key={REDACTED}&x=1"),
        ("http://user:p@ss@host.example/v1", f"http://user:{REDACTED}@host.example/v1"),
        ("https://user:pw@host.example:8443/v1", f"https://user:{REDACTED}@host.example:8443/v1"),
        (
            "max_tokens: 512, the author said input_tokens=3",
            "max_tokens: 512, the author said input_tokens=3",
        ),
    ],
)
def test_redaction(text: str, expected: str) -> None:
    assert redact(text) == expected


def test_redact_value_replaces_secret_fields_and_keeps_numbers() -> None:
    value = {"password": "hunter2", "args": [{"note": "sk_live_51HxAbCdEfGh12345"}], "token_count": 3}
    assert redact_value(value) == {"password": REDACTED, "args": [{"note": REDACTED}], "token_count": 3}


def test_a_secret_field_whose_key_ends_in_a_newline_is_still_replaced_whole() -> None:
    # The key check errs toward redacting: unlike the validators, it keeps ``$`` (which matches before
    # a final newline), so "password\n" is a secret field too.
    assert redact_value({"password\n": "hunter2", "Api_Key\n": "x"}) == {
        "password\n": REDACTED,
        "Api_Key\n": REDACTED,
    }


def test_spans_are_stored_as_the_rows_of_their_records(sql_url: str) -> None:
    """The exporter writes finished spans straight to rows (no ``SpanRecord`` in between): each
    row is the one ``write`` makes of the span's record, whatever the span holds."""
    memory = InMemorySpanExporter()
    with Telemetry(store=TraceStore(sql_url)) as telemetry, telemetry.activate():
        telemetry.add_span_processor(SimpleSpanProcessor(memory))
        with run_scope("run-9"), open_span("invoke_agent a", {"gen_ai.agent.name": "a"}):
            with span("tool", component="tool", attributes={"seq": ("x", 2), "f": 0.5, "b": True}):
                pass
            with pytest.raises(ValueError), open_span("failing", {"custom.key": "v"}):
                raise ValueError("bad")
            with telemetry.tracer.start_as_current_span("library", kind=SpanKind.CLIENT) as library:
                library.add_event("guardrail", {"rule": "r", "hits": ["a", "b"]})
        with open_span("outside", {"gen_ai.conversation.id": "run-10"}):
            pass
        spans = memory.get_finished_spans()
        assert len(spans) == 5
        store = telemetry.store
        store.write_spans(spans)
        store.write([SpanRecord.from_span(s) for s in spans])
        with store.engine.connect() as conn:
            rows = conn.execute(sa.text("SELECT * FROM telemetry_spans ORDER BY id")).mappings().all()
    direct, via_records = (
        [{k: v for k, v in row.items() if k != "id"} for row in half] for half in (rows[:5], rows[5:])
    )
    assert direct == via_records
    assert {row["run_id"] for row in direct} == {"run-9", "run-10"}
    assert any(row["events"] for row in direct) and any(row["status"] == "error" for row in direct)
