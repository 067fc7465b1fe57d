"""SIEM export of the audit log as OpenTelemetry logs: each entry one log record, sent through an
OpenTelemetry SDK ``LogRecordExporter`` (OTLP over HTTP where ``[security.audit] otlp_logs`` names a
collector's ``/v1/logs``; any other SDK exporter, the in-memory one in tests).

The exporter is called directly rather than through a ``LoggerProvider`` and its batch processor: a
processor drops what its exporter refused, whereas ``export_audit`` keeps the entries after its cursor
until the exporter reports success, so a collector that is down loses nothing.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from shopfloor.security._audit import AuditEntry
from shopfloor.security._siem import AuditExporter

__all__ = ["OtelLogsExporter", "audit_log_record"]

#: OpenTelemetry severity numbers: INFO, WARN, ERROR
_SEVERITY = {"ok": 9, "denied": 13, "failed": 17}
_SCOPE = "shopfloor.audit"


def audit_log_record(entry: AuditEntry) -> Any:
    """``entry`` as an SDK ``ReadableLogRecord``: the entry's JSON as the body, its fields as
    ``shopfloor.audit.*`` attributes, ``event_name`` its kind, the time its own."""
    from opentelemetry._logs import LogRecord, SeverityNumber
    from opentelemetry.sdk._logs import ReadableLogRecord
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.util.instrumentation import InstrumentationScope

    severity = _SEVERITY.get(entry.outcome, 9)
    nanos = int(entry.at * 1e9)
    record = LogRecord(
        timestamp=nanos,
        observed_timestamp=nanos,
        severity_number=SeverityNumber(severity),
        severity_text=SeverityNumber(severity).name,
        body=json.dumps(entry.to_dict(), separators=(",", ":"), ensure_ascii=False),
        event_name=entry.kind,
        attributes={
            "shopfloor.audit.seq": entry.seq,
            "shopfloor.audit.kind": entry.kind,
            "shopfloor.audit.actor": entry.actor,
            "shopfloor.audit.outcome": entry.outcome,
            "shopfloor.audit.resource": entry.resource,
            "shopfloor.audit.hash": entry.hash,
            "shopfloor.audit.prev": entry.prev,
        },
    )
    return ReadableLogRecord(
        log_record=record,
        resource=Resource.create({"service.name": "shopfloor"}),
        instrumentation_scope=InstrumentationScope(_SCOPE),
    )


class OtelLogsExporter(AuditExporter):
    """Audit entries to an OpenTelemetry SDK log exporter; ``send`` raises ``OSError`` unless it
    reports success (the entries stay queued behind the cursor)."""

    def __init__(self, exporter: Any, *, name: str) -> None:
        self.exporter = exporter
        self.name = f"otel-logs:{name}"

    @classmethod
    def otlp_http(cls, endpoint: str, *, timeout: float = 10.0) -> OtelLogsExporter:
        """To a collector's OTLP/HTTP logs endpoint (``http://HOST:4318/v1/logs``)."""
        from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter

        return cls(OTLPLogExporter(endpoint=endpoint, timeout=timeout), name=endpoint)

    def send(self, entries: Sequence[AuditEntry]) -> None:
        from opentelemetry.sdk._logs.export import LogRecordExportResult

        result = self.exporter.export([audit_log_record(entry) for entry in entries])
        if result != LogRecordExportResult.SUCCESS:
            raise OSError(f"{self.name} did not accept {len(entries)} entries ({result.name})")
