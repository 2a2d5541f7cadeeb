"""The output log: the console output of each execution, appended while it runs and read in pages.

:class:`OutputLog` is the contract; :class:`SQLiteOutputLog` keeps the logs in the ``output_logs``
(totals) and ``output_chunks`` (the bytes) tables of the service's SQLite database (:mod:`.schema`)
and touches no other table.

Output is stored as append-only chunks of at most ``chunk_bytes`` (64 KiB) each, every chunk valid
UTF-8 on its own, with the byte offset and line number at which it starts. A page is found with one
indexed lookup (the chunk holding its first byte or line) and then reads forward only as many chunks
as the page covers, so reading a page costs the same at line 10 as at line 10 million.

Appends are buffered in memory per execution and written as whole chunks: when the buffer reaches
``chunk_bytes``, when it is older than ``flush_interval`` seconds (a background thread sees to it even
when no further append comes), on :meth:`SQLiteOutputLog.flush` and :meth:`SQLiteOutputLog.seal`.
Reads merge the buffer in, so a reader in this process always sees every append. Only one process may
append to a database (readers in other processes see flushed output only).
"""

from __future__ import annotations

import builtins
import logging
import os
import sqlite3
import threading
import time
import weakref
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

from .executions import DuplicateExecution, ExecutionNotFound
from .output_pages import Chunk as _Chunk
from .output_pages import Extent as _OutputExtent
from .output_pages import boundary_at_or_before as _boundary_at_or_before
from .output_pages import bytes_page, lines_page
from .schema import open_database
from .sqlite import Closing, SQLiteDatabase

__all__ = [
    "DEFAULT_CHUNK_BYTES",
    "DEFAULT_FLUSH_INTERVAL",
    "DEFAULT_MAX_OUTPUT_BYTES",
    "OutputLog",
    "OutputPage",
    "OutputTotals",
    "SQLiteOutputLog",
    "truncation_marker",
]

log = logging.getLogger(__name__)

DEFAULT_MAX_OUTPUT_BYTES = 10 * 1024 * 1024
DEFAULT_CHUNK_BYTES = 64 * 1024
DEFAULT_FLUSH_INTERVAL = 0.25

_NL = 0x0A
_DELETE_BATCH = 200
_CHUNK_COLUMNS = "seq, start_byte, start_line, n_lines, data"


def truncation_marker(max_output_bytes: int) -> str:
    """The one line appended when an execution's output reaches its cap."""
    return f"[output truncated: limit of {max_output_bytes} bytes reached]\n"


@dataclass(frozen=True)
class OutputPage:
    """A window of console output: the contract's ExecutionOutput without execution_id and status.

    ``end_line`` and ``end_byte`` are exclusive; ``next_line_offset == end_line`` and
    ``next_byte_offset == end_byte``; ``has_more`` is whether the window ends before the output does.
    """

    data: str
    start_line: int
    end_line: int
    start_byte: int
    end_byte: int
    next_line_offset: int
    next_byte_offset: int
    has_more: bool
    total_lines: int
    total_bytes: int


@dataclass(frozen=True)
class OutputTotals:
    """The size of one execution's output: UTF-8 bytes, lines (a final line without a newline
    counts), and whether the cap cut it (then its last line is the truncation marker)."""

    total_bytes: int
    total_lines: int
    truncated: bool


@runtime_checkable
class OutputLog(Protocol):
    """The console output of executions: one append-only log per execution id, read in pages.

    Contract every backend keeps:

    * :meth:`create` starts an empty log (an existing one raises :class:`DuplicateExecution`);
      :meth:`append`, :meth:`totals` and the reads of an id without a log raise
      :class:`ExecutionNotFound`.
    * :meth:`append` stores text as UTF-8 (a lone surrogate becomes ``?``), in call order; the text
      of one call is never interleaved with another's. A sealed log still takes appends (a worker may
      print after a cancel was recorded), visible to every reader once :meth:`append` returns.
    * Cap: once a log holds ``max_output_bytes``, one :func:`truncation_marker` line is stored (on a
      line of its own) and later text is dropped; the cut never splits a UTF-8 character.
    * Reads see every :meth:`append` that returned before them; once :meth:`seal` returns, so does
      every reader of the store (other processes included). Call it before recording the terminal
      status of the execution.
    * :meth:`read_lines` and :meth:`read_bytes` return :class:`OutputPage` windows as their
      docstrings below say; :meth:`read_bytes` never splits a UTF-8 character. The cost of a page
      is independent of the size of the log and of the offset (a backend finds the first chunk by
      an index, never by scanning from the start).
    * :meth:`delete` removes logs and their output; unknown ids are not an error.
    * Every method may be called from many threads at once.

    A PostgreSQL backend keeps the same two tables (``data bytea``, btree indexes on
    ``(execution_id, start_byte)`` and ``(execution_id, start_line, seq)``), writes the chunks and the
    new totals in one transaction, and can skip the buffering when its round trips are cheap enough.
    """

    max_output_bytes: int

    def create(self, execution_id: str) -> None:
        """Starts the empty log of ``execution_id``."""
        ...

    def append(self, execution_id: str, text: str) -> None:
        """Appends console text (each entry already rendered with its trailing newline)."""
        ...

    def seal(self, execution_id: str) -> None:
        """The execution is over: makes everything appended so far visible to every reader."""
        ...

    def totals(self, execution_id: str) -> OutputTotals:
        """The size of the log of ``execution_id``."""
        ...

    def read_lines(self, execution_id: str, line_offset: int = 0, line_limit: int = 1000) -> OutputPage:
        """Up to ``line_limit`` whole lines from line ``line_offset``."""
        ...

    def read_bytes(self, execution_id: str, byte_offset: int = 0, byte_limit: int = 65536) -> OutputPage:
        """Up to ``byte_limit`` bytes from ``byte_offset``, never splitting a character."""
        ...

    def delete(self, execution_ids: Iterable[str]) -> int:
        """Removes the logs of ``execution_ids``; returns how many there were."""
        ...

    def close(self) -> None:
        """Makes buffered output durable and releases what the log holds. Idempotent."""
        ...


class _OutputState:
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


class SQLiteOutputLog(Closing):
    """An :class:`OutputLog` in the ``output_logs`` and ``output_chunks`` tables of the service's
    SQLite database. Safe to share between threads.

    ``database`` is a :class:`~.sqlite.SQLiteDatabase` opened by :func:`~.schema.open_database` and
    shared with the execution store (closed by whoever opened it), or a data directory, whose database
    the log then opens and closes itself.

    ``max_output_bytes`` caps the stored output of one execution (UTF-8 bytes); past it one marker line
    (:func:`truncation_marker`) is stored and the rest is dropped. ``flush_interval`` (seconds, None to
    flush only on size, :meth:`flush`, :meth:`seal` and :meth:`close`) bounds how long appended output
    stays in memory only. Use as a context manager or call :meth:`close`.

    ``chunk_rows_read`` counts output chunk rows fetched from SQLite (for tests and metrics).
    """

    def __init__(
        self,
        database: SQLiteDatabase | str | os.PathLike[str],
        *,
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
        self._owns_db = not isinstance(database, SQLiteDatabase)
        self._db = open_database(database) if not isinstance(database, SQLiteDatabase) else database

        self._closed = False
        self._counter_lock = threading.Lock()
        # The table of in-memory states, shared by every log: held only to look a state up, add or
        # remove it, never for database work (each state's own lock covers that).
        self._states: dict[str, _OutputState] = {}
        self._states_lock = threading.Lock()

        self._stop = threading.Event()
        self._flusher: threading.Thread | None = None
        if flush_interval is not None:
            self._flusher = threading.Thread(
                target=_flusher_main,
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
            self._db.run("INSERT INTO output_logs (execution_id) VALUES (?)", (execution_id,))
        except sqlite3.IntegrityError:
            raise DuplicateExecution(execution_id) from None
        with self._states_lock:
            # An append racing this call may have loaded the state already; keep that one.
            self._states.setdefault(execution_id, _OutputState(execution_id))

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
                    except sqlite3.Error:
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
            except sqlite3.Error:
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
        Raises :class:`ExecutionNotFound`."""
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
        ids = sorted(set(execution_ids))
        deleted = 0
        for i in range(0, len(ids), _DELETE_BATCH):
            batch = ids[i : i + _DELETE_BATCH]
            marks = ",".join("?" * len(batch))
            with self._db.write() as conn:
                cur = conn.execute(f"DELETE FROM output_logs WHERE execution_id IN ({marks})", batch)
                deleted += cur.rowcount
                conn.execute(f"DELETE FROM output_chunks WHERE execution_id IN ({marks})", batch)
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

    def _lookup_state(self, execution_id: str) -> _OutputState | None:
        with self._states_lock:
            return self._states.get(execution_id)

    def _state(self, execution_id: str) -> _OutputState:
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
            state = _OutputState(execution_id, buffered=False)
            state.lock.acquire()
            self._states[execution_id] = state
        try:
            with self._db.connection() as conn:
                row = conn.execute(
                    "SELECT total_bytes, total_newlines, truncated FROM output_logs WHERE execution_id = ?",
                    (execution_id,),
                ).fetchone()
                if row is None:
                    raise ExecutionNotFound(execution_id)
                last = conn.execute(
                    "SELECT seq, substr(data, -1) FROM output_chunks WHERE execution_id = ?"
                    " ORDER BY seq DESC LIMIT 1",
                    (execution_id,),
                ).fetchone()
            total_bytes, total_newlines, truncated = row
            state.next_seq = 0 if last is None else last[0] + 1
            state.flushed_bytes = total_bytes
            state.flushed_newlines = total_newlines
            state.ends_with_newline = last is None or bytes(last[1]) == b"\n"
            state.truncated = bool(truncated)
        except BaseException:
            self._detach_locked(state)
            raise
        finally:
            state.lock.release()
        return state

    def _detach_locked(self, state: _OutputState) -> None:
        state.detached = True
        with self._states_lock:
            if self._states.get(state.execution_id) is state:
                del self._states[state.execution_id]

    def _flush_due(self, state: _OutputState, now: float) -> bool:
        return (
            self.flush_interval is not None
            and state.pending_since is not None
            and now - state.pending_since >= self.flush_interval
        )

    def _flush_locked(self, state: _OutputState, *, full_chunks_only: bool = False) -> None:
        """Writes ``state.pending`` as chunks of at most ``chunk_bytes``, split on character
        boundaries, and the new totals, in one transaction. With ``full_chunks_only`` a last partial
        chunk stays buffered (so a flood is stored in full-size chunks). The caller holds ``state.lock``."""
        if not state.pending or state.detached:
            return
        data = bytes(state.pending)
        rows: builtins.list[tuple[str, int, int, int, int, bytes]] = []
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
            rows.append((state.execution_id, seq, start_byte, newlines, n, piece))
            seq, start_byte, newlines, pos = seq + 1, start_byte + len(piece), newlines + n, end
        if not rows:
            return
        ends_with_newline = data[pos - 1] == _NL
        with self._db.write() as conn:
            cur = conn.execute(
                "UPDATE output_logs SET total_bytes = ?, total_lines = ?, total_newlines = ?, truncated = ?"
                " WHERE execution_id = ?",
                (
                    start_byte,
                    newlines + (0 if ends_with_newline else 1),
                    newlines,
                    int(state.truncated),
                    state.execution_id,
                ),
            )
            if cur.rowcount == 1:  # else deleted meanwhile: nothing to write to
                conn.executemany(
                    f"INSERT INTO output_chunks (execution_id, {_CHUNK_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?)",
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
                if not state.detached:
                    pending = None
                    if state.pending:
                        pending = _Chunk(
                            state.next_seq,
                            state.flushed_bytes,
                            state.flushed_newlines,
                            state.pending_newlines,
                            bytes(state.pending),
                        )
                    return _OutputExtent(
                        state.total_bytes,
                        state.total_lines,
                        state.total_newlines,
                        state.truncated,
                        state.flushed_bytes,
                        pending,
                    )
        # Not buffered here: the database alone is the truth. Output is append-only and the totals are
        # written in the same transaction as the chunks, so chunks below total_bytes never change.
        with self._db.connection() as conn:
            row = conn.execute(
                "SELECT total_bytes, total_lines, total_newlines, truncated FROM output_logs"
                " WHERE execution_id = ?",
                (execution_id,),
            ).fetchone()
        if row is None:
            raise ExecutionNotFound(execution_id)
        return _OutputExtent(row[0], row[1], row[2], bool(row[3]), row[0], None)


class _ChunkReader:
    """Chunk lookups within one extent: stored chunks (below ``stored_bytes``), then the pending one."""

    def __init__(self, output: SQLiteOutputLog, execution_id: str, extent: _OutputExtent) -> None:
        self._output = output
        self._id = execution_id
        self._extent = extent

    def _one(self, sql: str, params: tuple[Any, ...]) -> _Chunk:
        with self._output._db.connection() as conn:
            row = conn.execute(sql, params).fetchone()
        if row is None:  # deleted while we read
            raise ExecutionNotFound(self._id)
        self._output._count_rows(1)
        return _Chunk(row[0], row[1], row[2], row[3], bytes(row[4]))

    def chunk_at_byte(self, byte: int) -> _Chunk:
        """The chunk holding byte ``byte`` (which exists)."""
        pending = self._extent.pending
        if pending is not None and byte >= pending.start_byte:
            return pending
        return self._one(
            f"SELECT {_CHUNK_COLUMNS} FROM output_chunks WHERE execution_id = ? AND start_byte <= ?"
            " ORDER BY start_byte DESC LIMIT 1",
            (self._id, byte),
        )

    def chunk_with_newline(self, k: int) -> _Chunk:
        """The chunk holding the ``k``-th newline (0-based, which exists). Among chunks that start on
        the same line only the last can hold newlines, hence ``seq DESC``."""
        pending = self._extent.pending
        if pending is not None and k >= pending.start_line:
            return pending
        return self._one(
            f"SELECT {_CHUNK_COLUMNS} FROM output_chunks WHERE execution_id = ? AND start_line <= ?"
            " AND start_byte < ? ORDER BY start_line DESC, seq DESC LIMIT 1",
            (self._id, k, self._extent.stored_bytes),
        )

    def chunks_from(self, first: _Chunk, *, byte_end: int, line_end: int | None = None) -> Iterator[_Chunk]:
        """``first`` and the chunks after it that start before byte ``byte_end`` (and, when given,
        on a line ``<= line_end``): exactly the chunks a page covers, in one range query."""
        yield first
        pending = self._extent.pending
        if first is pending:
            return
        sql = (
            f"SELECT {_CHUNK_COLUMNS} FROM output_chunks"
            " WHERE execution_id = ? AND seq > ? AND start_byte < ?"
        )
        params: tuple[Any, ...] = (self._id, first.seq, min(byte_end, self._extent.stored_bytes))
        if line_end is not None:
            sql += " AND start_line <= ?"
            params += (line_end,)
        with self._output._db.connection() as conn:
            rows = conn.execute(sql + " ORDER BY seq", params).fetchall()
        self._output._count_rows(len(rows))
        for row in rows:
            yield _Chunk(row[0], row[1], row[2], row[3], bytes(row[4]))
        if pending is not None and byte_end > pending.start_byte:
            yield pending


def _flusher_main(
    ref: weakref.ReferenceType[SQLiteOutputLog], stop: threading.Event, interval: float
) -> None:
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
