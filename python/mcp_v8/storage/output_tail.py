"""The in-memory tail of an execution's output in the output log (:mod:`.output_log`): what is
flushed, counted, and what is buffered, as bytes; and the thread that flushes the buffers that
waited long enough."""

from __future__ import annotations

import logging
import threading
import time
import weakref
from typing import Protocol

__all__ = ["OutputState", "flusher_main"]

log = logging.getLogger(__name__)

_NL = 0x0A


class OutputState:
    """The in-memory tail of one execution's output: totals of what is flushed plus the buffer."""

    __slots__ = (
        "buffered",
        "detached",
        "ends_with_newline",
        "execution_id",
        "flushed_bytes",
        "flushed_newlines",
        "lock",
        "next_seq",
        "pending",
        "pending_newlines",
        "pending_since",
        "truncated",
    )

    def __init__(
        self,
        execution_id: str,
        *,
        next_seq: int = 0,
        flushed_bytes: int = 0,
        flushed_newlines: int = 0,
        ends_with_newline: bool = True,
        truncated: bool = False,
        buffered: bool = True,
    ) -> None:
        self.execution_id = execution_id
        self.lock = threading.Lock()
        self.detached = False  # no longer in the log's table of states: callers must look it up again
        self.buffered = buffered  # False once sealed (or loaded from the database): write through
        self.next_seq = next_seq
        self.flushed_bytes = flushed_bytes
        self.flushed_newlines = flushed_newlines
        self.ends_with_newline = ends_with_newline  # also True when there is no output at all
        self.truncated = truncated
        self.pending = bytearray()
        self.pending_newlines = 0
        self.pending_since: float | None = None

    @property
    def total_bytes(self) -> int:
        return self.flushed_bytes + len(self.pending)

    @property
    def total_newlines(self) -> int:
        return self.flushed_newlines + self.pending_newlines

    @property
    def total_lines(self) -> int:
        return self.total_newlines + (0 if self.ends_with_newline else 1)

    def add(self, data: bytes) -> None:
        if not data:
            return
        if not self.pending:
            self.pending_since = time.monotonic()
        self.pending += data
        self.pending_newlines += data.count(b"\n")
        self.ends_with_newline = data[-1] == _NL


class _Flushing(Protocol):
    def _flush_overdue(self) -> None: ...


def flusher_main(ref: weakref.ReferenceType[_Flushing], stop: threading.Event, interval: float) -> None:
    """Flushes output buffered longer than ``interval``. Holds the log only weakly, so a log dropped
    without ``close()`` is still collected (and the thread ends)."""
    while not stop.wait(interval):
        output = ref()
        if output is None:
            return
        try:
            output._flush_overdue()
        except Exception:  # keep flushing later; the data stays buffered
            log.exception("flushing console output failed")
        finally:
            del output
