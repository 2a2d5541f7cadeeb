"""The server's log lines on standard error: human-readable (``--log-format text``, the default)
or one JSON object a line (``--log-format json``) for a log system to index.

A JSON line has ``time`` (UTC, ISO 8601 with milliseconds), ``level``, ``logger``, ``message``,
then ``execution_id`` when the line is about one execution (the thread logging it is handling it:
:func:`execution_context`), ``trace_id`` when that execution is traced (:mod:`.tracing`), ``node`` (this process's lease id, once the service has one) and
``exception`` (the traceback) when there is one. Workers' standard error is not the server's log:
it stays in their files, as it is.
"""

from __future__ import annotations

import contextlib
import contextvars
import json
import logging
import sys
from collections.abc import Iterator
from datetime import datetime, timezone
from typing import IO, Any

__all__ = ["LOG_FORMATS", "JsonFormatter", "configure", "execution_context"]

LOG_FORMATS = ("text", "json")
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
_HANDLER = "mcp-v8"  # the name of the handler configure() installs (others are left alone)

# The execution the current thread (or task) is handling, for the lines it logs.
_execution: contextvars.ContextVar[str | None] = contextvars.ContextVar("mcp_v8_execution", default=None)
_trace: contextvars.ContextVar[str | None] = contextvars.ContextVar("mcp_v8_trace", default=None)


@contextlib.contextmanager
def execution_context(execution_id: str, trace_id: str | None = None) -> Iterator[None]:
    """The lines logged inside (by this thread) are about ``execution_id``, of the trace
    ``trace_id`` (None: not traced)."""
    token, trace_token = _execution.set(execution_id), _trace.set(trace_id)
    try:
        yield
    finally:
        _trace.reset(trace_token)
        _execution.reset(token)


def current_execution() -> str | None:
    return _execution.get()


class JsonFormatter(logging.Formatter):
    """One JSON object a line (see the module's docstring); ``node`` is set once known."""

    def __init__(self, node: str | None = None) -> None:
        super().__init__()
        self.node = node

    def format(self, record: logging.LogRecord) -> str:
        at = datetime.fromtimestamp(record.created, timezone.utc)
        line: dict[str, Any] = {
            "time": at.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        execution_id = getattr(record, "execution_id", None) or _execution.get()
        if execution_id is not None:
            line["execution_id"] = execution_id
        trace_id = getattr(record, "trace_id", None) or _trace.get()
        if trace_id is not None:
            line["trace_id"] = trace_id
        if self.node is not None:
            line["node"] = self.node
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        elif record.exc_text:
            line["exception"] = record.exc_text
        return json.dumps(line, ensure_ascii=False, default=str)


def configure(log_format: str, level: int, stream: IO[str] | None = None) -> logging.Formatter:
    """Logs of this process (its root logger) to ``stream`` (standard error) in ``log_format``,
    in place of what an earlier call installed; returns the formatter (a :class:`JsonFormatter`'s ``node`` is set once the service has one)."""
    if log_format not in LOG_FORMATS:
        raise ValueError(f"log format must be one of {', '.join(LOG_FORMATS)}")
    formatter = JsonFormatter() if log_format == "json" else logging.Formatter(TEXT_FORMAT)
    handler = logging.StreamHandler(stream if stream is not None else sys.stderr)
    handler.setFormatter(formatter)
    handler.set_name(_HANDLER)
    root = logging.getLogger()
    for earlier in [h for h in root.handlers if h.get_name() == _HANDLER]:  # configured again
        root.removeHandler(earlier)
    root.addHandler(handler)
    root.setLevel(level)
    return formatter
