"""Structured JSON logs that carry the current trace and span ids, with secrets redacted.

A log line written inside a span can be joined with that span in any backend
(``trace_id``/``span_id`` as 32/16 hex digits, the OpenTelemetry log data model).
"""

from __future__ import annotations

import json
import logging
import time
from typing import Any

from opentelemetry import trace

from shopfloor.telemetry._redact import redact

__all__ = ["JsonLogFormatter", "configure_json_logs"]

# Attributes every LogRecord has; anything else was passed with ``extra=`` and is kept.
_STANDARD = frozenset(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {
    "message",
    "asctime",
    "taskName",
}


class JsonLogFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        data: dict[str, Any] = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        context = trace.get_current_span().get_span_context()
        if context.is_valid:
            data["trace_id"] = format(context.trace_id, "032x")
            data["span_id"] = format(context.span_id, "016x")
        for key, value in vars(record).items():
            if key not in _STANDARD and key not in data:
                data[key] = value
        if record.exc_info:
            data["exception"] = self.formatException(record.exc_info)
        return redact(json.dumps(data, default=str))


def configure_json_logs(logger: logging.Logger | None = None, level: int = logging.INFO) -> logging.Handler:
    """Send ``logger``'s records (default: ``shopfloor``) to stderr as JSON lines; idempotent."""
    target = logger or logging.getLogger("shopfloor")
    for handler in target.handlers:
        if isinstance(handler.formatter, JsonLogFormatter):
            return handler
    handler = logging.StreamHandler()
    handler.setFormatter(JsonLogFormatter())
    target.addHandler(handler)
    target.setLevel(level)
    return handler
