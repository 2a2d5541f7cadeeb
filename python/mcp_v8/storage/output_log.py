"""The output log over a database connector: :class:`SQLOutputLog`, the ``output_logs`` (totals)
and ``output_chunks`` (the bytes) tables of the registry database, SQLite
(:class:`SQLiteOutputLog`) or PostgreSQL (:class:`~.postgres.stores.PostgresOutputLog`), keeping
the contract of :class:`~.output.OutputLog`.

Output is stored as append-only chunks of at most ``chunk_bytes`` (64 KiB) each, every chunk valid
UTF-8 on its own, with the byte offset and line number at which it starts. A page is found with one
indexed lookup (the chunk holding its first byte or line) and then reads forward only as many chunks
as the page covers (:mod:`.output_pages`), so reading a page costs the same at line 10 as at line
10 million.

Appends are buffered in memory per execution and written as whole chunks, with the new totals, in
one transaction: when the buffer reaches ``chunk_bytes``, when it is older than ``flush_interval``
seconds (a background thread sees to it even when no further append comes), on
:meth:`SQLOutputLog.flush` and :meth:`SQLOutputLog.seal`. Reads merge the buffer in, so a reader in
this process always sees every append; readers elsewhere (other processes, other nodes) see what is
flushed, and everything once the log is sealed. One store appends to a log at a time: the one that
created it, or adopted it (:meth:`SQLOutputLog.adopt`: the node that claimed the execution);
after the seal, whichever store appends writes through.
"""

from __future__ import annotations

import builtins
import logging
import os
import threading
import time
import weakref
from collections.abc import Iterable, Iterator
from typing import Any, TypedDict, Unpack

from .errors import DuplicateExecution, DuplicateKey, ExecutionNotFound
from .output import DEFAULT_MAX_OUTPUT_BYTES, OutputPage, OutputTotals, truncation_marker
from .output_pages import Chunk as _Chunk
from .output_pages import Extent as _OutputExtent
from .output_pages import boundary_at_or_before as _boundary_at_or_before
from .output_pages import bytes_page, lines_page
from .output_tail import OutputState, flusher_main
from .schema import opened
from .sql import Closing, Connector, Row
from .sqlite import SQLiteDatabase

__all__ = [
    "DEFAULT_CHUNK_BYTES",
    "DEFAULT_FLUSH_INTERVAL",
    "OutputOptions",
    "SQLOutputLog",
    "SQLiteOutputLog",
]

log = logging.getLogger(__name__)

DEFAULT_CHUNK_BYTES = 64 * 1024
DEFAULT_FLUSH_INTERVAL = 0.25

_DELETE_BATCH = 500
_CHUNKS = "SELECT seq, start_byte, start_line, n_lines, data FROM output_chunks WHERE execution_id = :id"
_TOTALS = "SELECT total_bytes, total_lines, total_newlines, truncated FROM output_logs"


class SQLOutputLog(Closing):
    """An :class:`~.output.OutputLog` in the ``output_logs`` and ``output_chunks`` tables of
    ``database``, a :class:`~.sql.Connector` shared with the other stores (and closed by whoever
    opened it, unless ``owned``). Safe to share between threads.

    ``max_output_bytes`` caps the stored output of one execution (UTF-8 bytes); past it one marker line
    (:func:`truncation_marker`) is stored and the rest is dropped. ``flush_interval`` (seconds, None to
    flush only on size, :meth:`flush`, :meth:`seal` and :meth:`close`) bounds how long appended output
    stays in memory only. Use as a context manager or call :meth:`close`.

    ``chunk_rows_read`` counts output chunk rows fetched (for tests and metrics).
    """

    def __init__(
        self,
        database: Connector,
        *,
        owned: bool = False,
        max_output_bytes: int = DEFAULT_MAX_OUTPUT_BYTES,
        flush_interval: float | None = DEFAULT_FLUSH_INTERVAL,
        chunk_bytes: int = DEFAULT_CHUNK_BYTES,
    ) -> None:
        if max_output_bytes < 1:
            raise ValueError("max_output_bytes must be >= 1")
        if chunk_bytes < 4:
            raise ValueError("chunk_bytes must be >= 4 (one UTF-8 character)")
        if flush_interval is not None and flush_interval <= 0:
            raise ValueError("flush_interval must be > 0 or None")
        self.max_output_bytes = max_output_bytes
        self.flush_interval = flush_interval
        self.chunk_bytes = chunk_bytes
        self.chunk_rows_read = 0
        self._owns_db = owned
        self._db = database
        self._nul = not database.dialect.holds_nul  # an id holding U+0000 has no log

        self._closed = False
        self._counter_lock = threading.Lock()
        # The table of in-memory states, shared by every log: held only to look a state up, add or
        # remove it, never for database work (each state's own lock covers that).
        self._states: dict[str, OutputState] = {}
        self._states_lock = threading.Lock()

        self._stop = threading.Event()
        self._flusher: threading.Thread | None = None
        if flush_interval is not None:
            self._flusher = threading.Thread(
                target=flusher_main,
                args=(weakref.ref(self), self._stop, flush_interval),
                name="mcp-v8-output-flusher",
                daemon=True,
            )
            self._flusher.start()

    # -- lifecycle -----------------------------------------------------------------------------

    def close(self) -> None:
        """Flushes buffered output and stops the flusher (and closes the database when the log opened
        it). Later calls raise ``RuntimeError``. Idempotent."""
        if self._closed:
            return
        self._stop.set()
        if self._flusher is not None and self._flusher is not threading.current_thread():
            self._flusher.join()
        try:
            self.flush_all()
        finally:
            self._closed = True
            if self._owns_db:
                self._db.close()

    # -- OutputLog -----------------------------------------------------------------------------

    def create(self, execution_id: str) -> None:
        """Starts the empty log of ``execution_id``, buffered until :meth:`seal`. Raises
        :class:`DuplicateExecution`."""
        self._check_open()
        try:
            self._db.run("INSERT INTO output_logs (execution_id) VALUES (:id)", {"id": execution_id})
        except DuplicateKey:
            raise DuplicateExecution(execution_id) from None
        self.adopt(execution_id)

    def adopt(self, execution_id: str) -> None:
        """This log appends to the log of ``execution_id`` from now on, buffered until :meth:`seal`,
        without reading the database: a log created empty (by :meth:`create`, here or in another
        store on the same database) that nothing appended to yet. An id without a log: its
        appends are dropped at the first flush."""
        self._check_open()
        with self._states_lock:
            # An append racing this call may have loaded the state already; keep that one.
            self._states.setdefault(execution_id, OutputState(execution_id))

    def append(self, execution_id: str, text: str) -> None:
        """Appends console text (each entry already rendered with its trailing newline).

        Cheap: buffered in memory and written in chunks. Once the stored output reaches
        ``max_output_bytes``, one truncation marker line is stored and later text is dropped.
        Raises :class:`ExecutionNotFound` for an id without a log. Text of a sealed log is written
        through at once.
        """
        if not text:
            return
        self._check_open()
        data = text.encode("utf-8", "replace")  # a lone surrogate becomes "?"
        while True:
            state = self._state(execution_id)
            with state.lock:
                if state.detached:
                    continue
                if state.truncated:
                    return
                room = self.max_output_bytes - state.total_bytes
                if len(data) <= room:
                    state.add(data)
                else:
                    state.add(data[: _boundary_at_or_before(data, room)])
                    marker = truncation_marker(self.max_output_bytes).encode("utf-8")
                    state.add(marker if state.ends_with_newline else b"\n" + marker)
                    state.truncated = True
                flush_all = not state.buffered or state.truncated or self._flush_due(state, time.monotonic())
                if flush_all or len(state.pending) >= self.chunk_bytes:
                    try:
                        self._flush_locked(state, full_chunks_only=not flush_all)
                    except self._db.errors:
                        # Do not fail the execution over its console: keep the text buffered (bounded by
                        # max_output_bytes); the flusher, the next append or seal() retries.
                        log.warning("console output of %s stays buffered", execution_id, exc_info=True)
                        return
                if not state.buffered:
                    self._detach_locked(state)
                return

    def seal(self, execution_id: str) -> None:
        """Writes the buffered output of ``execution_id`` to the database; later appends are
        written through. When the database refuses, the output stays buffered (readers in this
        process still see it) and the flusher retries."""
        state = self._lookup_state(execution_id)
        if state is None:
            return
        with state.lock:
            state.buffered = False
            try:
                self._flush_locked(state)
            except self._db.errors:
                log.warning("console output of %s stays buffered", execution_id, exc_info=True)
                return
            self._detach_locked(state)

    def totals(self, execution_id: str) -> OutputTotals:
        """The size of the log of ``execution_id``, buffered output included. Raises
        :class:`ExecutionNotFound`."""
        self._check_open()
        extent = self._extent(execution_id)
        return OutputTotals(extent.total_bytes, extent.total_lines, extent.truncated)

    def read_lines(self, execution_id: str, line_offset: int = 0, line_limit: int = 1000) -> OutputPage:
        """A page of whole lines (:func:`~.output_pages.lines_page`), buffered output included.
        Raises :class:`~.errors.ExecutionNotFound`."""
        self._check_open()
        extent = self._extent(execution_id)
        return lines_page(_ChunkReader(self, execution_id, extent), extent, line_offset, line_limit)

    def read_bytes(self, execution_id: str, byte_offset: int = 0, byte_limit: int = 65536) -> OutputPage:
        """A page of bytes never splitting a character (:func:`~.output_pages.bytes_page`),
        buffered output included. Raises :class:`ExecutionNotFound`."""
        self._check_open()
        extent = self._extent(execution_id)
        return bytes_page(_ChunkReader(self, execution_id, extent), extent, byte_offset, byte_limit)

    def delete(self, execution_ids: Iterable[str]) -> int:
        """Removes the logs of ``execution_ids`` and their output, buffered output included;
        returns how many logs there were."""
        ids = sorted({i for i in execution_ids if not (self._nul and "\x00" in i)})
        deleted = 0
        for i in range(0, len(ids), _DELETE_BATCH):
            batch = {"ids": ids[i : i + _DELETE_BATCH]}
            with self._db.transaction() as session:
                deleted += session.count("DELETE FROM output_logs WHERE execution_id {any:ids}", batch)
                session.run("DELETE FROM output_chunks WHERE execution_id {any:ids}", batch)
        for execution_id in ids:
            state = self._lookup_state(execution_id)
            if state is not None:
                with state.lock:
                    state.pending.clear()
                    self._detach_locked(state)
        return deleted

    # -- buffering -----------------------------------------------------------------------------

    def flush(self, execution_id: str) -> None:
        """Writes the buffered output of ``execution_id`` to the database."""
        state = self._lookup_state(execution_id)
        if state is not None:
            with state.lock:
                self._flush_locked(state)

    def flush_all(self) -> None:
        """Writes every buffered output to the database."""
        with self._states_lock:
            states = builtins.list(self._states.values())
        for state in states:
            with state.lock:
                self._flush_locked(state)

    # -- internals -----------------------------------------------------------------------------

    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeError("the output log is closed")

    def _count_rows(self, n: int) -> None:
        with self._counter_lock:
            self.chunk_rows_read += n

    def _lookup_state(self, execution_id: str) -> OutputState | None:
        with self._states_lock:
            return self._states.get(execution_id)

    def _state(self, execution_id: str) -> OutputState:
        """The output state of ``execution_id``, loaded from the database if not in memory (then it
        writes through: its execution was sealed, or ran in an earlier process).

        The load runs outside the log-wide ``_states_lock``, so a slow one never holds up the other
        logs. It runs under the lock of a new state that is locked before it is published (taking a
        lock nobody else can see never waits, so this inverts no lock order): appends and reads of
        this log find it and wait for the load, and never load a second, stale copy. A load that
        fails detaches the state; whoever waited looks the log up again."""
        with self._states_lock:
            state = self._states.get(execution_id)
            if state is not None:
                return state
            state = OutputState(execution_id, buffered=False)
            state.lock.acquire()
            self._states[execution_id] = state
        try:
            if self._nul and "\x00" in execution_id:
                raise ExecutionNotFound(execution_id)
            with self._db.session() as session:
                rows = session.run(
                    "SELECT total_bytes, total_lines, total_newlines, truncated,"
                    " (SELECT coalesce(max(seq) + 1, 0) FROM output_chunks AS c WHERE c.execution_id = l.execution_id)"
                    " FROM output_logs AS l WHERE l.execution_id = :id",
                    {"id": execution_id},
                )
            if not rows:
                raise ExecutionNotFound(execution_id)
            total_bytes, total_lines, total_newlines, truncated, next_seq = rows[0]
            state.next_seq = int(next_seq)
            state.flushed_bytes = int(total_bytes)
            state.flushed_newlines = int(total_newlines)
            state.ends_with_newline = total_lines == total_newlines  # also when there is no output
            state.truncated = bool(truncated)
        except BaseException:
            self._detach_locked(state)
            raise
        finally:
            state.lock.release()
        return state

    def _detach_locked(self, state: OutputState) -> None:
        state.detached = True
        with self._states_lock:
            if self._states.get(state.execution_id) is state:
                del self._states[state.execution_id]

    def _flush_due(self, state: OutputState, now: float) -> bool:
        return (
            self.flush_interval is not None
            and state.pending_since is not None
            and now - state.pending_since >= self.flush_interval
        )

    def _flush_locked(self, state: OutputState, *, full_chunks_only: bool = False) -> None:
        """Writes ``state.pending`` as chunks of at most ``chunk_bytes``, split on character
        boundaries, and the new totals, in one transaction. With ``full_chunks_only`` a last partial
        chunk stays buffered (so a flood is stored in full-size chunks). The caller holds ``state.lock``."""
        if not state.pending or state.detached:
            return
        data = bytes(state.pending)
        rows: builtins.list[dict[str, Any]] = []
        seq, start_byte, newlines, pos = state.next_seq, state.flushed_bytes, state.flushed_newlines, 0
        old_newlines = newlines
        while pos < len(data):
            if full_chunks_only and len(data) - pos < self.chunk_bytes:
                break
            end = min(pos + self.chunk_bytes, len(data))
            if end < len(data):
                end = _boundary_at_or_before(data, end)
            piece = data[pos:end]
            n = piece.count(b"\n")
            rows.append(
                {
                    "id": state.execution_id,
                    "seq": seq,
                    "byte": start_byte,
                    "line": newlines,
                    "n": n,
                    "data": piece,
                }
            )
            seq, start_byte, newlines, pos = seq + 1, start_byte + len(piece), newlines + n, end
        if not rows:
            return
        ends_with_newline = data[pos - 1 : pos] == b"\n"
        with self._db.transaction() as session:
            written = session.count(
                "UPDATE output_logs SET total_bytes = :bytes, total_lines = :lines, total_newlines = :newlines,"
                " truncated = :truncated WHERE execution_id = :id",
                {
                    "bytes": start_byte,
                    "lines": newlines + (0 if ends_with_newline else 1),
                    "newlines": newlines,
                    "truncated": state.truncated,
                    "id": state.execution_id,
                },
            )
            if written == 1:  # else deleted meanwhile: nothing to write to
                session.many(
                    "INSERT INTO output_chunks (execution_id, seq, start_byte, start_line, n_lines, data)"
                    " VALUES (:id, :seq, :byte, :line, :n, :data)",
                    rows,
                )
        state.next_seq, state.flushed_bytes, state.flushed_newlines = seq, start_byte, newlines
        del state.pending[:pos]
        state.pending_newlines -= newlines - old_newlines
        state.pending_since = time.monotonic() if state.pending else None

    def _flush_overdue(self) -> None:
        now = time.monotonic()
        with self._states_lock:
            states = builtins.list(self._states.values())
        for state in states:
            # A state busy now (being loaded, appended to, read) is not waited for: an append
            # flushes what is due itself, and the next pass sees the rest.
            if not state.lock.acquire(blocking=False):
                continue
            try:
                if self._flush_due(state, now):
                    self._flush_locked(state)
                    if not state.buffered:  # sealed while the database refused: done now
                        self._detach_locked(state)
            finally:
                state.lock.release()

    def _extent(self, execution_id: str) -> _OutputExtent:
        state = self._lookup_state(execution_id)
        if state is not None:
            with state.lock:
                if not state.detached and state.pending:  # what the database has, and the rest here
                    return _OutputExtent(
                        state.total_bytes,
                        state.total_lines,
                        state.total_newlines,
                        state.truncated,
                        state.flushed_bytes,
                        _Chunk(
                            state.next_seq,
                            state.flushed_bytes,
                            state.flushed_newlines,
                            state.pending_newlines,
                            bytes(state.pending),
                        ),
                    )
        # Nothing buffered here: the database alone is the truth (also for a log another store
        # adopted). Output is append-only and the totals are written in the same transaction as
        # the chunks, so chunks below total_bytes never change.
        rows = (
            []
            if self._nul and "\x00" in execution_id
            else self._db.run(f"{_TOTALS} WHERE execution_id = :id", {"id": execution_id})
        )
        if not rows:
            raise ExecutionNotFound(execution_id)
        b, lines, newlines, truncated = (int(v) for v in rows[0])
        return _OutputExtent(b, lines, newlines, bool(truncated), b, None)


class _ChunkReader:
    """Chunk lookups within one extent: stored chunks (below ``stored_bytes``), then the pending one."""

    def __init__(self, output: SQLOutputLog, execution_id: str, extent: _OutputExtent) -> None:
        self._output = output
        self._id = execution_id
        self._extent = extent

    def _fetch(self, sql: str, params: dict[str, Any]) -> builtins.list[_Chunk]:
        rows = self._output._db.run(sql, {"id": self._id, **params})
        self._output._count_rows(len(rows))
        return [self._chunk(row) for row in rows]

    @staticmethod
    def _chunk(row: Row) -> _Chunk:
        return _Chunk(int(row[0]), int(row[1]), int(row[2]), int(row[3]), bytes(row[4]))

    def _one(self, sql: str, params: dict[str, Any]) -> _Chunk:
        chunks = self._fetch(sql, params)
        if not chunks:  # deleted while we read
            raise ExecutionNotFound(self._id)
        return chunks[0]

    def chunk_at_byte(self, byte: int) -> _Chunk:
        """The chunk holding byte ``byte`` (which exists)."""
        pending = self._extent.pending
        if pending is not None and byte >= pending.start_byte:
            return pending
        return self._one(
            f"{_CHUNKS} AND start_byte <= :byte ORDER BY start_byte DESC LIMIT 1", {"byte": byte}
        )

    def chunk_with_newline(self, k: int) -> _Chunk:
        """The chunk holding the ``k``-th newline (0-based, which exists). Among chunks that start on
        the same line only the last can hold newlines, hence ``seq DESC``."""
        pending = self._extent.pending
        if pending is not None and k >= pending.start_line:
            return pending
        return self._one(
            f"{_CHUNKS} AND start_line <= :line AND start_byte < :end ORDER BY start_line DESC, seq DESC LIMIT 1",
            {"line": k, "end": self._extent.stored_bytes},
        )

    def chunks_from(self, first: _Chunk, *, byte_end: int, line_end: int | None = None) -> Iterator[_Chunk]:
        """``first`` and the chunks after it that start before byte ``byte_end`` (and, when given,
        on a line ``<= line_end``): exactly the chunks a page covers, in one range query."""
        yield first
        pending = self._extent.pending
        if first is pending:
            return
        end = min(byte_end, self._extent.stored_bytes)
        if first.start_byte + len(first.data) < end:
            sql = f"{_CHUNKS} AND seq > :seq AND start_byte < :end"
            if line_end is not None:
                sql += " AND start_line <= :line"
            yield from self._fetch(sql + " ORDER BY seq", {"seq": first.seq, "end": end, "line": line_end})
        if pending is not None and byte_end > pending.start_byte:
            yield pending


class OutputOptions(TypedDict, total=False):
    """The settings of an output log beside its database (see :class:`SQLOutputLog`)."""

    max_output_bytes: int
    flush_interval: float | None
    chunk_bytes: int


class SQLiteOutputLog(SQLOutputLog):
    """The output log in the SQLite database ``database``, or in that of the data directory
    ``database`` names (which the log then opens and closes itself)."""

    def __init__(
        self, database: SQLiteDatabase | str | os.PathLike[str], **options: Unpack[OutputOptions]
    ) -> None:
        db, owned = opened(database)
        super().__init__(db, owned=owned, **options)
