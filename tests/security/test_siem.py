"""SIEM export: JSON lines, RFC 5424 syslog over TCP (octet counting) and UDP to receivers on loopback;
a receiver that is down loses no entry (queued, retried, counted)."""

from __future__ import annotations

import json
import re
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from shopfloor.security import (
    AuditLog,
    AuditShipper,
    JsonLinesExporter,
    SyslogTcpExporter,
    SyslogUdpExporter,
    export_audit,
    load_signing_key,
)

_RFC5424 = re.compile(
    rb"^<(\d+)>1 \d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z \S+ shopfloor - (\S+) "
    rb'\[shopfloor@32473 seq="(\d+)" hash="([0-9a-f]{64})"\] \xef\xbb\xbf(\{.*\})$'
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


class TcpReceiver:
    """A syslog receiver over TCP that parses octet-counted frames (RFC 6587)."""

    def __init__(self, port: int = 0) -> None:
        self.server = socket.create_server(("127.0.0.1", port))
        self.port = self.server.getsockname()[1]
        self.messages: list[bytes] = []
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.server.accept()
            except OSError:
                return
            data = b""
            with conn:
                conn.settimeout(5)
                while chunk := conn.recv(65536):
                    data += chunk
            while data:
                length, _, rest = data.partition(b" ")
                self.messages.append(rest[: int(length)])
                data = rest[int(length) :]

    def close(self) -> None:
        self.server.close()


@pytest.fixture
def receiver() -> Iterator[TcpReceiver]:
    server = TcpReceiver()
    yield server
    server.close()


def _wait(predicate: object, seconds: float = 5.0) -> None:
    import time

    deadline = time.monotonic() + seconds
    while not predicate() and time.monotonic() < deadline:  # type: ignore[operator]
        time.sleep(0.02)


def test_json_lines_file(log: AuditLog, tmp_path: Path) -> None:
    out = tmp_path / "siem" / "audit.jsonl"
    status = export_audit(log, JsonLinesExporter(out))
    assert (status.sent, status.queued, status.failures) == (2, 0, 0)
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert [line["kind"] for line in lines] == ["approval.decided", "permission.denied"]
    log.append("secret.read", actor="agent:a", resource="secrets/db")
    assert export_audit(log, JsonLinesExporter(out)).sent == 1  # only what is new
    assert len(out.read_text().splitlines()) == 3


def test_syslog_tcp_octet_framed_rfc5424(log: AuditLog, receiver: TcpReceiver) -> None:
    status = export_audit(log, SyslogTcpExporter(f"127.0.0.1:{receiver.port}"))
    assert status.sent == 2
    _wait(lambda: len(receiver.messages) == 2)
    parsed = [_RFC5424.match(message) for message in receiver.messages]
    assert all(parsed), receiver.messages
    first, second = (m for m in parsed if m)
    assert int(first.group(1)) == 13 * 8 + 5 and int(second.group(1)) == 13 * 8 + 4
    assert (first.group(2), first.group(3)) == (b"approval.decided", b"1")
    assert json.loads(first.group(5))["actor"] == "key:alice"


def test_syslog_udp(log: AuditLog) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        sock.settimeout(5)
        export_audit(log, SyslogUdpExporter(f"127.0.0.1:{sock.getsockname()[1]}"))
        got = [sock.recv(65536) for _ in range(2)]
    assert [m.group(3) for m in map(_RFC5424.match, got) if m] == [b"1", b"2"]


def test_a_receiver_that_is_down_loses_nothing(log: AuditLog) -> None:
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    exporter = SyslogTcpExporter(f"127.0.0.1:{port}", timeout=1)
    for attempt in (1, 2):
        down = export_audit(log, exporter)
        assert (down.sent, down.queued, down.failures) == (0, 2, attempt)
        assert down.error and "Connection" in down.error
    log.append("key.revoked", actor="local-admin", resource="keys/k1")
    server = TcpReceiver(port)
    try:
        up = export_audit(log, exporter)
        _wait(lambda: len(server.messages) == 3)
    finally:
        server.close()
    assert (up.sent, up.queued, up.failures, up.error) == (3, 0, 2, None)
    assert [m.group(3) for m in map(_RFC5424.match, server.messages) if m] == [b"1", b"2", b"3"]


def test_the_shipper_keeps_exporting_until_a_late_receiver_has_everything(log: AuditLog) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    shipper = AuditShipper(log, [SyslogTcpExporter(f"127.0.0.1:{port}", timeout=1)], interval=0.05).start()
    _wait(lambda: shipper.last and shipper.last[0].failures >= 2)
    log.append("key.created", actor="local-admin", resource="keys/k2")
    server = TcpReceiver(port)
    try:
        _wait(lambda: len(server.messages) == 3)
        shipper.stop()
    finally:
        server.close()
    assert [m.group(3) for m in map(_RFC5424.match, server.messages) if m] == [b"1", b"2", b"3"]
    assert shipper.last[0].queued == 0 and shipper.last[0].failures >= 2
