"""JSON logs on stdout: one object per line, for CloudWatch Logs (awslogs) and humans with jq.

Two paths share the stream:

- ``AccessLog.write`` for the one line per request. It bypasses ``logging`` on
  purpose: it runs on every request, and a dict -> JSON -> write is several
  times cheaper than a LogRecord through handlers and formatters.
- ``configure_logging`` routes everything else (startup, drain, DNS served
  stale...) through the standard ``logging`` module, formatted as JSON, so
  libraries such as ``aiohttp_discovery`` log the normal way.

Lines are flushed one by one: a task's last words before SIGKILL must not sit
in a buffer, and the container runtime reads stdout through a pipe.
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime
from typing import Any, TextIO

# Attributes every LogRecord has; anything else was passed with ``extra=`` and
# becomes a field of the JSON object.
_RECORD_ATTRS = frozenset(vars(logging.makeLogRecord({}))) | {"message", "asctime"}


def now_rfc3339() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class AccessLog:
    """Writes one JSON object per line to ``stream`` (stdout by default)."""

    def __init__(self, stream: TextIO | None = None) -> None:
        self._stream = stream

    def write(self, fields: dict[str, Any]) -> None:
        stream = self._stream or sys.stdout
        line = json.dumps({"time": now_rfc3339(), **fields}, separators=(",", ":"), default=str)
        stream.write(line + "\n")
        stream.flush()


class JsonFormatter(logging.Formatter):
    """A LogRecord as one JSON object: time, level, logger, message and ``extra=`` fields."""

    def format(self, record: logging.LogRecord) -> str:
        body: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC)
            .isoformat(timespec="milliseconds")
            .replace("+00:00", "Z"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in _RECORD_ATTRS and not key.startswith("_"):
                body[key] = value
        if record.exc_info:
            body["exception"] = self.formatException(record.exc_info)
        return json.dumps(body, separators=(",", ":"), default=str)


class _FlushingStdout(logging.StreamHandler):  # type: ignore[type-arg]
    """A StreamHandler that looks ``sys.stdout`` up at emit time (pytest swaps it)."""

    def __init__(self) -> None:
        super().__init__(sys.stdout)

    def emit(self, record: logging.LogRecord) -> None:
        self.setStream(sys.stdout)
        super().emit(record)


def configure_logging(level: int = logging.INFO) -> None:
    """Send all ``logging`` output to stdout as JSON lines. Call once, at process start."""
    handler = _FlushingStdout()
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # aiohttp's own access logger is disabled (we write our own lines); keep its
    # server errors, which arrive through "aiohttp.server" at ERROR level.
    logging.getLogger("aiohttp.access").disabled = True
