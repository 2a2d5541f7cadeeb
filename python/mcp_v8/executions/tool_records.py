"""The records of the scripts' tool calls on their way to the store (:mod:`mcp_v8.storage.tool_call_log`).

:class:`~.tool_calls.ToolCalls` reports each call once, from whichever thread answered it: a call
thread, its timer, or the slot's reader (a call refused as it came, the calls abandoned when the
job ends). None of them may wait on the database, least of all the reader, which carries the
worker's channel; so :meth:`ToolCallRecorder.record` only appends to a buffer in memory, as the
output log buffers console text. A thread of the recorder's writes the buffer in batches every
``interval`` seconds; :meth:`ToolCallRecorder.flush` writes an execution's records at once (its
dispatcher, once the job returned and before its terminal status is recorded, so a client that
sees it finished reads its calls; a read of the records in this process). A write the database
refuses is kept for the next pass (up to ``max_pending`` records; past it new ones are dropped
with a warning).

The buffer is read and written under one lock, never held for a database write.
"""

from __future__ import annotations

import logging
import threading

from ..storage import ToolCallLog, ToolCallRow
from .tool_calls import ToolCallRecord

log = logging.getLogger(__name__)

__all__ = ["DEFAULT_INTERVAL", "ToolCallRecorder"]

DEFAULT_INTERVAL = 0.25  # seconds a record may stay in memory only
MAX_PENDING = 100_000  # records in memory, for every execution together


def _row(record: ToolCallRecord) -> ToolCallRow:
    return ToolCallRow(
        record.call_id,
        record.server,
        record.tool,
        record.arguments_bytes,
        record.outcome,
        record.message,
        record.started_at,
        round(record.duration_ms, 3),
    )


class ToolCallRecorder:
    """Buffers records for ``store`` and writes them from a thread of its own."""

    def __init__(
        self, store: ToolCallLog, *, interval: float | None = DEFAULT_INTERVAL, max_pending: int = MAX_PENDING
    ) -> None:
        self._store = store
        self._max_pending = max_pending
        # Under _cond: the records not yet written, by execution; their count; whether closed.
        self._cond = threading.Condition()
        self._pending: dict[str, list[ToolCallRow]] = {}
        self._count = 0
        self._closed = False
        self._dropped = 0
        self._thread: threading.Thread | None = None
        if interval is not None:
            self._thread = threading.Thread(
                target=self._loop, args=(interval,), daemon=True, name="mcp-v8-tool-records"
            )
            self._thread.start()

    def record(self, execution_id: str, record: ToolCallRecord) -> None:
        """Buffers one record; any thread; never waits for the database."""
        row = _row(record)
        with self._cond:
            if self._count >= self._max_pending:
                self._dropped += 1
                if self._dropped == 1 or self._dropped % 1000 == 0:
                    log.warning("tool call records dropped: %d waiting for the database", self._count)
                return
            self._pending.setdefault(execution_id, []).append(row)
            self._count += 1

    def flush(self, execution_id: str | None = None) -> None:
        """Writes the buffered records of ``execution_id`` (None: of every execution). A refused
        write is logged and its records go back to the buffer."""
        with self._cond:
            if execution_id is None:
                taken, self._pending = self._pending, {}
            else:
                rows = self._pending.pop(execution_id, None)
                taken = {} if rows is None else {execution_id: rows}
            self._count -= sum(len(rows) for rows in taken.values())
        for eid, rows in taken.items():
            try:
                self._store.add(eid, rows)
            except Exception:
                log.exception("the tool call records of execution %s could not be written yet", eid)
                with self._cond:
                    self._pending.setdefault(eid, [])[:0] = rows
                    self._count += len(rows)

    def pending(self, execution_id: str) -> int:
        """The records of ``execution_id`` not written yet."""
        with self._cond:
            return len(self._pending.get(execution_id, ()))

    def _loop(self, interval: float) -> None:
        while True:
            with self._cond:
                self._cond.wait_for(lambda: self._closed, interval)
                if self._closed:
                    return
            try:
                self.flush()
            except Exception:  # the writer must survive anything
                log.exception("writing tool call records failed")

    def close(self) -> None:
        """Stops the writer and writes what is buffered. Idempotent."""
        with self._cond:
            if self._closed:
                return
            self._closed = True
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join(10)
        self.flush()
