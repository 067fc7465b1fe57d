"""SIEM export of the audit log: JSON lines to a file, syslog (RFC 5424) over TCP with octet-counting
framing (RFC 6587) and over UDP, and OpenTelemetry logs (``_otel_audit.py``).

An exporter keeps a cursor in the audit database (the last entry its receiver accepted): ``export``
sends what follows the cursor and moves it only after a send succeeded, so a receiver that is down
loses nothing: the entries stay queued, are sent again on the next call, and the failure is counted.
"""

from __future__ import annotations

import json
import socket
import threading
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import sqlalchemy as sa

from shopfloor.config import Settings
from shopfloor.errors import ConfigError
from shopfloor.security._audit import AuditEntry, AuditLog, entries_table, exports_table
from shopfloor.storage import insert_ignore

__all__ = [
    "AuditExporter",
    "AuditShipper",
    "ExportStatus",
    "JsonLinesExporter",
    "SyslogTcpExporter",
    "SyslogUdpExporter",
    "build_audit_exporters",
    "export_audit",
    "syslog_message",
]

#: syslog facility 13, "log audit"
_FACILITY = 13
_SEVERITY = {"ok": 5, "denied": 4, "failed": 3}  # notice, warning, error


def syslog_message(entry: AuditEntry, *, hostname: str | None = None) -> bytes:
    """``entry`` as one RFC 5424 message: the entry's JSON as MSG, its number and hash as structured data."""
    pri = _FACILITY * 8 + _SEVERITY.get(entry.outcome, 5)
    stamp = datetime.fromtimestamp(entry.at, UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")
    host = (hostname or socket.gethostname() or "-")[:255]
    data = f'[shopfloor@32473 seq="{entry.seq}" hash="{entry.hash}"]'
    body = json.dumps(entry.to_dict(), separators=(",", ":"), ensure_ascii=False)
    return (
        f"<{pri}>1 {stamp} {host} shopfloor - {entry.kind[:32]} {data} ".encode()
        + b"\xef\xbb\xbf"
        + body.encode()
    )


class AuditExporter(ABC):
    """A SIEM destination; ``send`` delivers entries in order or raises ``OSError``."""

    #: the cursor's name in the audit database (one per destination)
    name: str

    @abstractmethod
    def send(self, entries: Sequence[AuditEntry]) -> None: ...


class JsonLinesExporter(AuditExporter):
    def __init__(self, path: Path) -> None:
        self.path = path
        self.name = f"jsonl:{path}"

    def send(self, entries: Sequence[AuditEntry]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("a", encoding="utf-8") as out:
            for entry in entries:
                out.write(json.dumps(entry.to_dict(), separators=(",", ":"), ensure_ascii=False) + "\n")
            out.flush()


def _address(target: str) -> tuple[str, int]:
    host, _, port = target.rpartition(":")
    if not host or not port.isdigit():
        raise ConfigError(f"syslog destination {target!r}: expected HOST:PORT")
    return host.strip("[]"), int(port)


class SyslogTcpExporter(AuditExporter):
    """RFC 5424 over TCP, each message framed as ``LENGTH SP MESSAGE`` (octet counting)."""

    def __init__(self, target: str, *, timeout: float = 5.0) -> None:
        self.address = _address(target)
        self.timeout = timeout
        self.name = f"syslog+tcp:{target}"

    def send(self, entries: Sequence[AuditEntry]) -> None:
        frames = b"".join(b"%d %s" % (len(m), m) for m in map(syslog_message, entries))
        with socket.create_connection(self.address, timeout=self.timeout) as sock:
            sock.sendall(frames)
            # a clean close, so that a receiver that has gone away is seen as a failure here
            sock.shutdown(socket.SHUT_WR)


class SyslogUdpExporter(AuditExporter):
    """RFC 5424 over UDP, one datagram per entry (best effort by the protocol's nature)."""

    def __init__(self, target: str) -> None:
        self.address = _address(target)
        self.name = f"syslog+udp:{target}"

    def send(self, entries: Sequence[AuditEntry]) -> None:
        family = socket.AF_INET6 if ":" in self.address[0] else socket.AF_INET
        with socket.socket(family, socket.SOCK_DGRAM) as sock:
            sock.connect(self.address)
            for entry in entries:
                sock.send(syslog_message(entry)[:65000])


@dataclass(frozen=True, kw_only=True)
class ExportStatus:
    exporter: str
    sent: int
    #: entries after the cursor still waiting for the destination
    queued: int
    failures: int
    error: str | None = None


def _cursor(log: AuditLog, name: str) -> tuple[int, int]:
    with log.engine.begin() as conn:
        conn.execute(
            insert_ignore(log.engine, exports_table, ["exporter"]).values(
                exporter=name, last_seq=0, failures=0
            )
        )
        row = conn.execute(sa.select(exports_table).where(exports_table.c.exporter == name)).one()
    return int(row.last_seq), int(row.failures)


def export_audit(log: AuditLog, exporter: AuditExporter, *, batch: int = 500) -> ExportStatus:
    """Send every entry ``exporter`` has not accepted yet; on a failure keep them queued and count it."""
    last, failures = _cursor(log, exporter.name)
    sent = 0
    error: str | None = None
    while pending := log.entries(after=last, limit=batch):
        try:
            exporter.send(pending)
        except OSError as exc:
            error = f"{type(exc).__name__}: {exc}"
            failures += 1
            with log.engine.begin() as conn:
                conn.execute(
                    exports_table.update()
                    .where(exports_table.c.exporter == exporter.name)
                    .values(failures=exports_table.c.failures + 1, last_error=error)
                )
            break
        last = pending[-1].seq
        sent += len(pending)
        with log.engine.begin() as conn:
            conn.execute(
                exports_table.update().where(exports_table.c.exporter == exporter.name).values(last_seq=last)
            )
    with log.engine.connect() as conn:
        head = conn.execute(sa.select(sa.func.max(entries_table.c.seq))).scalar()
    return ExportStatus(
        exporter=exporter.name,
        sent=sent,
        queued=max(0, int(head or 0) - last),
        failures=failures,
        error=error,
    )


class AuditShipper:
    """Exports the audit log to every destination every ``interval`` seconds, in a thread of its own (what
    a long-running process, ``shopfloor serve`` or a worker, runs beside its work)."""

    def __init__(self, log: AuditLog, exporters: Sequence[AuditExporter], *, interval: float = 5.0) -> None:
        self.log = log
        self.exporters = list(exporters)
        self.interval = interval
        self.last: list[ExportStatus] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="audit-shipper", daemon=True)

    def start(self) -> AuditShipper:
        self._thread.start()
        return self

    def ship(self) -> list[ExportStatus]:
        self.last = [export_audit(self.log, exporter) for exporter in self.exporters]
        return self.last

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.ship()

    def stop(self) -> None:
        """Stop, after one last export of what was appended meanwhile."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()
        self.ship()


def build_audit_exporters(settings: Settings) -> list[AuditExporter]:
    """The destinations ``[security.audit]`` configures (``jsonl_file``, ``syslog_tcp``, ``syslog_udp``,
    ``otlp_logs``)."""
    audit = settings.security.audit
    exporters: list[AuditExporter] = []
    if audit.jsonl_file is not None:
        exporters.append(JsonLinesExporter(audit.jsonl_file))
    if audit.syslog_tcp:
        exporters.append(SyslogTcpExporter(audit.syslog_tcp))
    if audit.syslog_udp:
        exporters.append(SyslogUdpExporter(audit.syslog_udp))
    if audit.otlp_logs:
        from shopfloor.security._otel_audit import OtelLogsExporter  # imports this module

        exporters.append(OtelLogsExporter.otlp_http(audit.otlp_logs))
    return exporters
