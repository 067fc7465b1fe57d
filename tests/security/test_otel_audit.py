"""SIEM export as OpenTelemetry logs: through the SDK's in-memory exporter at the seam, and over OTLP/HTTP
to a receiver on loopback that decodes the protobuf requests, configured by ``[security.audit]
otlp_logs``; a collector that is down or refuses loses no entry (queued, counted, sent later)."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.sdk._logs.export import InMemoryLogRecordExporter

from shopfloor.config import Settings
from shopfloor.security import (
    AuditLog,
    OtelLogsExporter,
    build_audit_exporters,
    export_audit,
    load_signing_key,
)


@pytest.fixture
def log(tmp_path: Path) -> Iterator[AuditLog]:
    with AuditLog.open(
        f"sqlite:///{tmp_path / 'a.db'}", signing_key=load_signing_key(tmp_path / "k.pem")
    ) as audit:
        audit.append(
            "approval.decided", actor="key:alice", resource="runs/r1#step1", details={"approved": True}
        )
        audit.append("permission.denied", actor="key:v", outcome="denied", resource="runs", details={})
        yield audit


def test_entries_become_log_records_through_the_sdk_exporter(log: AuditLog) -> None:
    memory = InMemoryLogRecordExporter()
    status = export_audit(log, OtelLogsExporter(memory, name="memory"))
    assert (status.sent, status.queued, status.failures) == (2, 0, 0)
    records = [readable.log_record for readable in memory.get_finished_logs()]
    assert [r.event_name for r in records] == ["approval.decided", "permission.denied"]
    assert [r.severity_text for r in records] == ["INFO", "WARN"]
    first = records[0]
    assert first.attributes is not None
    assert first.attributes["shopfloor.audit.seq"] == 1
    assert first.attributes["shopfloor.audit.actor"] == "key:alice"
    assert first.attributes["shopfloor.audit.hash"] == log.entries()[0].hash
    assert json.loads(str(first.body))["details"] == {"approved": True}
    assert first.timestamp == int(log.entries()[0].at * 1e9)


def test_an_exporter_that_refuses_keeps_the_entries_queued(log: AuditLog) -> None:
    stopped = InMemoryLogRecordExporter()
    stopped.shutdown()  # answers FAILURE from now on
    down = export_audit(log, OtelLogsExporter(stopped, name="collector"))
    assert (down.sent, down.queued, down.failures) == (0, 2, 1)
    assert down.error is not None and "did not accept 2 entries (FAILURE)" in down.error
    log.append("key.revoked", actor="local-admin", resource="keys/k1")
    memory = InMemoryLogRecordExporter()
    up = export_audit(log, OtelLogsExporter(memory, name="collector"))  # the same destination, back up
    assert (up.sent, up.queued, up.failures, up.error) == (3, 0, 1, None)
    assert [r.log_record.attributes["shopfloor.audit.seq"] for r in memory.get_finished_logs()] == [1, 2, 3]  # type: ignore[index]


class _OtlpReceiver:
    """An OTLP/HTTP logs endpoint on loopback: decodes each ``ExportLogsServiceRequest``."""

    def __init__(self) -> None:
        self.requests: list[ExportLogsServiceRequest] = []
        received = self.requests

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                request = ExportLogsServiceRequest()
                request.ParseFromString(body)
                received.append(request)
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1/logs"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._thread.start()

    def records(self) -> list[Any]:
        return [
            record
            for request in self.requests
            for resource in request.resource_logs
            for scope in resource.scope_logs
            for record in scope.log_records
        ]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def test_otlp_http_to_a_receiver_on_loopback_from_configuration(log: AuditLog, settings: Settings) -> None:
    receiver = _OtlpReceiver()
    try:
        audit = settings.security.audit.model_copy(update={"otlp_logs": receiver.url})
        configured = settings.model_copy(
            update={"security": settings.security.model_copy(update={"audit": audit})}
        )
        (exporter,) = build_audit_exporters(configured)
        status = export_audit(log, exporter)
    finally:
        receiver.close()
    assert (status.sent, status.queued, status.error) == (2, 0, None)
    records = receiver.records()
    assert [r.event_name for r in records] == ["approval.decided", "permission.denied"]
    attributes = {a.key: a.value for a in records[1].attributes}
    assert attributes["shopfloor.audit.seq"].int_value == 2
    assert attributes["shopfloor.audit.outcome"].string_value == "denied"
    scopes = [s.scope.name for r in receiver.requests for rl in r.resource_logs for s in rl.scope_logs]
    assert set(scopes) == {"shopfloor.audit"}


def test_otlp_http_to_a_collector_that_is_down_keeps_the_entries_queued(log: AuditLog) -> None:
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    exporter = OtelLogsExporter.otlp_http(f"http://127.0.0.1:{port}/v1/logs", timeout=1)
    down = export_audit(log, exporter)
    assert (down.sent, down.queued, down.failures) == (0, 2, 1)
