"""The execution registry: execution records and their console output, in one SQLite database.

One file, ``<root>/registry.sqlite3``, in WAL mode with ``synchronous=NORMAL``: a committed transaction
survives a kill of the process (an OS crash may lose the last few), readers never block the writer.

Console output is stored as append-only chunks of at most ``chunk_bytes`` (64 KiB) each, every chunk
valid UTF-8 on its own, with the byte offset and line number at which it starts. A page is found with
one indexed lookup (the chunk holding its first byte or line) and then reads forward only as many
chunks as the page covers, so reading a page costs the same at line 10 as at line 10 million.

Appends are buffered in memory per execution and written as whole chunks: when the buffer reaches
``chunk_bytes``, when it is older than ``flush_interval`` seconds (a background thread sees to it even
when no further append comes), on :meth:`Registry.flush` and before :meth:`Registry.finish` records a
terminal status. Reads merge the buffer in, so a reader in this process always sees every append.
Only one process may append to a database (readers in other processes see flushed output only).
"""

from __future__ import annotations

import builtins
import json
import logging
import os
import sqlite3
import threading
import time
import weakref
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import datetime, timedelta, timezone
from types import TracebackType
from typing import Any, Literal, NamedTuple

__all__ = [
    "DEFAULT_CHUNK_BYTES",
    "DEFAULT_FLUSH_INTERVAL",
    "DEFAULT_MAX_OUTPUT_BYTES",
    "TERMINAL_STATUSES",
    "DuplicateExecution",
    "ExecutionNotFound",
    "ExecutionRecord",
    "ExecutionStatus",
    "OutputPage",
    "Registry",
    "TerminalStatus",
    "truncation_marker",
]

log = logging.getLogger(__name__)

ExecutionStatus = Literal["running", "completed", "failed", "cancelled", "timed_out"]
TerminalStatus = Literal["completed", "failed", "cancelled", "timed_out"]
TERMINAL_STATUSES: frozenset[str] = frozenset({"completed", "failed", "cancelled", "timed_out"})

DEFAULT_MAX_OUTPUT_BYTES = 10 * 1024 * 1024
DEFAULT_CHUNK_BYTES = 64 * 1024
DEFAULT_FLUSH_INTERVAL = 0.25
DB_FILENAME = "registry.sqlite3"
SCHEMA_VERSION = 1

_NL = 0x0A
_DELETE_BATCH = 200
_MAX_IDLE_CONNECTIONS = 8


class ExecutionNotFound(KeyError):
    """No execution is recorded under this id."""


class DuplicateExecution(ValueError):
    """An execution with this id is already recorded."""


def truncation_marker(max_output_bytes: int) -> str:
    """The one line appended when an execution's output reaches its cap."""
    return f"[output truncated: limit of {max_output_bytes} bytes reached]\n"


@dataclass(frozen=True)
class ExecutionRecord:
    """One execution as recorded. ``heap`` is the snapshot key it produced; ``heap_in`` the one it
    restored. Timestamps are ISO-8601 UTC with millisecond precision and a ``Z``."""

    execution_id: str
    status: ExecutionStatus
    started_at: str
    completed_at: str | None
    result: str | None
    error: str | None
    heap: str | None
    session: str | None
    tags: dict[str, str] | None
    duration_ms: float | None
    heap_in: str | None = None
    code_bytes: int = 0
    total_bytes: int = 0
    total_lines: int = 0
    truncated: bool = False

    @property
    def is_terminal(self) -> bool:
        return self.status != "running"


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


# -- schema --------------------------------------------------------------------------------------

_SCHEMA = """
CREATE TABLE executions (
    id             INTEGER PRIMARY KEY,
    execution_id   TEXT NOT NULL UNIQUE,
    status         TEXT NOT NULL
                   CHECK (status IN ('running', 'completed', 'failed', 'cancelled', 'timed_out')),
    started_at     TEXT NOT NULL,
    completed_at   TEXT,
    result         TEXT,
    error          TEXT,
    heap_in        TEXT,
    heap_out       TEXT,
    session        TEXT,
    tags           TEXT,
    code_bytes     INTEGER NOT NULL DEFAULT 0,
    duration_ms    REAL,
    total_bytes    INTEGER NOT NULL DEFAULT 0,
    total_lines    INTEGER NOT NULL DEFAULT 0,
    total_newlines INTEGER NOT NULL DEFAULT 0,
    truncated      INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX executions_by_start ON executions (started_at);
CREATE INDEX executions_by_status ON executions (status, started_at);

CREATE TABLE output_chunks (
    execution_id TEXT NOT NULL,
    seq          INTEGER NOT NULL,
    start_byte   INTEGER NOT NULL,
    start_line   INTEGER NOT NULL,
    n_lines      INTEGER NOT NULL,
    data         BLOB NOT NULL,
    UNIQUE (execution_id, seq)
);
CREATE INDEX output_chunks_by_byte ON output_chunks (execution_id, start_byte);
CREATE INDEX output_chunks_by_line ON output_chunks (execution_id, start_line, seq);
"""

_RECORD_COLUMNS = (
    "execution_id, status, started_at, completed_at, result, error, heap_out, session, tags, "
    "duration_ms, heap_in, code_bytes, total_bytes, total_lines, truncated"
)
_CHUNK_COLUMNS = "seq, start_byte, start_line, n_lines, data"


def _now() -> datetime:
    return datetime.now(timezone.utc)


def _iso(dt: datetime) -> str:
    return dt.astimezone(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _parse_iso(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def _is_continuation(byte: int) -> bool:
    return byte & 0xC0 == 0x80


def _boundary_at_or_before(data: bytes | bytearray, pos: int) -> int:
    """The largest UTF-8 character boundary ``<= pos`` in ``data`` (which starts on a boundary)."""
    while 0 < pos < len(data) and _is_continuation(data[pos]):
        pos -= 1
    return pos


def _nth_newline(data: bytes, n: int) -> int:
    """Index of the ``n``-th (0-based) newline in ``data``; the caller knows it exists."""
    pos = -1
    for _ in range(n + 1):
        pos = data.index(b"\n", pos + 1)
    return pos


class _Chunk(NamedTuple):
    seq: int
    start_byte: int
    start_line: int  # newlines before the chunk's first byte: the line that byte belongs to
    n_lines: int  # newlines inside the chunk
    data: bytes


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
        self.detached = False  # no longer in the registry's table: callers must look it up again
        self.buffered = buffered  # False for executions already terminal: write through
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


class _Snapshot(NamedTuple):
    """A consistent view of one execution's output: flushed chunks below ``db_bytes``, then ``pending``."""

    total_bytes: int
    total_lines: int
    total_newlines: int
    db_bytes: int
    pending: _Chunk | None


class Registry:
    """Execution records and console output over SQLite (WAL). Safe to share between threads: each
    call borrows a connection from a small pool (so concurrent readers do not wait for each other)
    and every write is one short ``BEGIN IMMEDIATE`` transaction.

    ``max_output_bytes`` caps the stored output of one execution (UTF-8 bytes); past it one marker line
    (:func:`truncation_marker`) is stored and the rest is dropped. ``flush_interval`` (seconds, None to
    flush only on size, :meth:`flush`, :meth:`finish` and :meth:`close`) bounds how long appended output
    stays in memory only. Use as a context manager or call :meth:`close`.

    ``chunk_rows_read`` counts output chunk rows fetched from SQLite (for tests and metrics).
    """

    def __init__(
        self,
        root: str | os.PathLike[str],
        *,
        max_output_bytes: int = DEFAULT_MAX_OUTPUT_BYTES,
        flush_interval: float | None = DEFAULT_FLUSH_INTERVAL,
        chunk_bytes: int = DEFAULT_CHUNK_BYTES,
        busy_timeout_ms: int = 10_000,
    ) -> None:
        if max_output_bytes < 1:
            raise ValueError("max_output_bytes must be >= 1")
        if chunk_bytes < 4:
            raise ValueError("chunk_bytes must be >= 4 (one UTF-8 character)")
        if flush_interval is not None and flush_interval <= 0:
            raise ValueError("flush_interval must be > 0 or None")
        self.root = os.fspath(root)
        os.makedirs(self.root, exist_ok=True)
        self.path = os.path.join(self.root, DB_FILENAME)
        self.max_output_bytes = max_output_bytes
        self.flush_interval = flush_interval
        self.chunk_bytes = chunk_bytes
        self.busy_timeout_ms = busy_timeout_ms
        self.chunk_rows_read = 0

        self._closed = False
        self._idle: builtins.list[sqlite3.Connection] = []  # pooled connections not in use
        self._pool_lock = threading.Lock()
        self._counter_lock = threading.Lock()
        self._states: dict[str, _OutputState] = {}
        self._states_lock = threading.Lock()

        self._init_schema()

        self._stop = threading.Event()
        self._flusher: threading.Thread | None = None
        if flush_interval is not None:
            self._flusher = threading.Thread(
                target=_flusher_main,
                args=(weakref.ref(self), self._stop, flush_interval),
                name="mcp-v8-registry-flusher",
                daemon=True,
            )
            self._flusher.start()

    # -- lifecycle -----------------------------------------------------------------------------

    def close(self) -> None:
        """Flushes buffered output, stops the flusher and closes every connection. Idempotent."""
        if self._closed:
            return
        self._stop.set()
        if self._flusher is not None and self._flusher is not threading.current_thread():
            self._flusher.join()
        try:
            self.flush_all()
        finally:
            self._closed = True
            with self._pool_lock:
                idle, self._idle = self._idle, []
            for conn in idle:  # connections in use are closed when they come back
                conn.close()

    def __enter__(self) -> Registry:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # -- execution records ---------------------------------------------------------------------

    def create(
        self,
        execution_id: str,
        *,
        session: str | None = None,
        tags: dict[str, str] | None = None,
        heap_in: str | None = None,
        code_bytes: int = 0,
    ) -> None:
        """Records a new execution as ``running``, started now. Raises :class:`DuplicateExecution`."""
        tags_json = json.dumps(tags, ensure_ascii=False, sort_keys=True) if tags is not None else None
        try:
            with self._write() as conn:
                conn.execute(
                    "INSERT INTO executions (execution_id, status, started_at, heap_in, session, tags,"
                    " code_bytes) VALUES (?, 'running', ?, ?, ?, ?, ?)",
                    (execution_id, _iso(_now()), heap_in, session, tags_json, code_bytes),
                )
        except sqlite3.IntegrityError:
            raise DuplicateExecution(execution_id) from None
        with self._states_lock:
            # An append racing this call may have loaded the state already; keep that one.
            self._states.setdefault(execution_id, _OutputState(execution_id))

    def finish(
        self,
        execution_id: str,
        status: TerminalStatus,
        *,
        result: str | None = None,
        error: str | None = None,
        heap_out: str | None = None,
        duration_ms: float | None = None,
    ) -> bool:
        """Records the first terminal transition of a running execution; returns False (and changes
        nothing) when it is already terminal or unknown.

        Buffered output is flushed first, so a client that sees a terminal status reads all output
        appended before this call. ``duration_ms`` defaults to the wall-clock time since ``started_at``.
        """
        if status not in TERMINAL_STATUSES:
            raise ValueError(f"not a terminal status: {status!r}")
        state = self._lookup_state(execution_id)
        if state is not None:
            with state.lock:
                self._flush_locked(state)
        now = _now()
        with self._write() as conn:
            if duration_ms is None:
                row = conn.execute(
                    "SELECT started_at FROM executions WHERE execution_id = ? AND status = 'running'",
                    (execution_id,),
                ).fetchone()
                if row is not None:
                    duration_ms = (now - _parse_iso(row[0])).total_seconds() * 1000.0
            cur = conn.execute(
                "UPDATE executions SET status = ?, completed_at = ?, result = ?, error = ?, heap_out = ?,"
                " duration_ms = ? WHERE execution_id = ? AND status = 'running'",
                (status, _iso(now), result, error, heap_out, duration_ms, execution_id),
            )
            won = cur.rowcount == 1
        if state is not None:
            self._detach(state)
        return won

    def get(self, execution_id: str) -> ExecutionRecord | None:
        """The record of ``execution_id``, or None."""
        with self._connection() as conn:
            row = conn.execute(
                f"SELECT {_RECORD_COLUMNS} FROM executions WHERE execution_id = ?", (execution_id,)
            ).fetchone()
        return None if row is None else self._record(row)

    def list(self, limit: int = 100, status: ExecutionStatus | None = None) -> builtins.list[ExecutionRecord]:
        """Up to ``limit`` records, newest first (by ``started_at``, then by insertion order)."""
        if limit < 0:
            raise ValueError("limit must be >= 0")
        sql = f"SELECT {_RECORD_COLUMNS} FROM executions"
        params: tuple[Any, ...] = ()
        if status is not None:
            sql += " WHERE status = ?"
            params = (status,)
        sql += " ORDER BY started_at DESC, id DESC LIMIT ?"
        with self._connection() as conn:
            rows = conn.execute(sql, (*params, limit)).fetchall()
        return [self._record(row) for row in rows]

    def fail_running_on_startup(self, reason: str) -> int:
        """Marks every ``running`` execution ``failed`` with ``reason`` (after a restart nothing can
        still be running them); returns how many. Call before accepting requests."""
        with self._write() as conn:
            cur = conn.execute(
                "UPDATE executions SET status = 'failed', error = ?, completed_at = ?"
                " WHERE status = 'running'",
                (reason, _iso(_now())),
            )
            count = cur.rowcount
        with self._states_lock:
            states = builtins.list(self._states.values())
        for state in states:
            self._detach(state)
        return count

    def prune(self, max_age_seconds: float | None = None, max_count: int | None = None) -> int:
        """Deletes terminal executions (and their output) that completed more than ``max_age_seconds``
        ago or that are not among the newest ``max_count`` terminal executions; returns how many.
        Running executions are never deleted and do not count towards ``max_count``. Heap snapshots
        are not touched (several executions may share one)."""
        if max_count is not None and max_count < 0:
            raise ValueError("max_count must be >= 0")
        doomed: set[str] = set()
        with self._connection() as conn:
            if max_age_seconds is not None:
                cutoff = _iso(_now() - timedelta(seconds=max_age_seconds))
                rows = conn.execute(
                    "SELECT execution_id FROM executions WHERE status != 'running' AND completed_at < ?",
                    (cutoff,),
                ).fetchall()
                doomed.update(row[0] for row in rows)
            if max_count is not None:
                rows = conn.execute(
                    "SELECT execution_id FROM executions WHERE status != 'running'"
                    " ORDER BY started_at DESC, id DESC LIMIT -1 OFFSET ?",
                    (max_count,),
                ).fetchall()
                doomed.update(row[0] for row in rows)
        ids = sorted(doomed)
        deleted = 0
        for i in range(0, len(ids), _DELETE_BATCH):
            batch = ids[i : i + _DELETE_BATCH]
            marks = ",".join("?" * len(batch))
            with self._write() as wconn:
                cur = wconn.execute(
                    f"DELETE FROM executions WHERE status != 'running' AND execution_id IN ({marks})", batch
                )
                deleted += cur.rowcount
                wconn.execute(f"DELETE FROM output_chunks WHERE execution_id IN ({marks})", batch)
        for execution_id in ids:
            state = self._lookup_state(execution_id)
            if state is not None:
                with state.lock:
                    state.pending.clear()
                self._detach(state)
        return deleted

    # -- console output ------------------------------------------------------------------------

    def append_output(self, execution_id: str, text: str) -> None:
        """Appends console text (each entry already rendered with its trailing newline).

        Cheap: buffered in memory and written in chunks. Once the stored output reaches
        ``max_output_bytes``, one truncation marker line is stored and later text is dropped.
        Raises :class:`ExecutionNotFound` for an unknown id. Text of a terminal execution is still
        stored (a worker may print after a cancel was recorded).
        """
        if not text:
            return
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
                        # max_output_bytes); the flusher, the next append or finish() retries.
                        log.warning("console output of %s stays buffered", execution_id, exc_info=True)
                        return
                if not state.buffered:
                    self._detach_locked(state)
                return

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

    def read_lines(self, execution_id: str, line_offset: int = 0, line_limit: int = 1000) -> OutputPage:
        """Up to ``line_limit`` whole lines from line ``line_offset`` (0-indexed). A line is text up to
        and including a newline; a final line without one counts too. An offset past the end gives an
        empty page at the end. Raises :class:`ExecutionNotFound`."""
        if line_offset < 0 or line_limit < 0:
            raise ValueError("line_offset and line_limit must be >= 0")
        snap = self._snapshot(execution_id)
        src = _Source(self, execution_id, snap)
        total_bytes, total_lines = snap.total_bytes, snap.total_lines
        first_line = min(line_offset, total_lines)
        if first_line == total_lines:
            return _page(b"", total_lines, total_lines, total_bytes, total_bytes, snap)
        end_line = min(first_line + line_limit, total_lines)

        if first_line == 0:
            first = src.chunk_at_byte(0)
            start_byte = 0
        else:
            first = src.chunk_with_newline(first_line - 1)
            start_byte = first.start_byte + _nth_newline(first.data, first_line - 1 - first.start_line) + 1
        if end_line == first_line:
            return _page(b"", first_line, first_line, start_byte, start_byte, snap)

        parts: builtins.list[bytes] = []
        end_byte = total_bytes
        last_newline = end_line - 1  # the newline that ends the page, unless it ends with the output
        bounded = end_line < total_lines
        chunks = src.chunks_from(first, byte_end=total_bytes, line_end=last_newline if bounded else None)
        for chunk in chunks:
            lo = max(start_byte - chunk.start_byte, 0)
            if bounded and chunk.start_line + chunk.n_lines > last_newline:
                hi = _nth_newline(chunk.data, last_newline - chunk.start_line) + 1
                parts.append(chunk.data[lo:hi])
                end_byte = chunk.start_byte + hi
                break
            parts.append(chunk.data[lo:])
        return _page(b"".join(parts), first_line, end_line, start_byte, end_byte, snap)

    def read_bytes(self, execution_id: str, byte_offset: int = 0, byte_limit: int = 65536) -> OutputPage:
        """Up to ``byte_limit`` bytes from ``byte_offset``, never splitting a UTF-8 character: an
        offset inside a character moves forward to the next one; a limit that would cut a character
        ends before it, except that a page with ``byte_limit >= 1`` always holds at least one whole
        character. ``start_line`` is the line holding the first byte, ``end_line`` the line holding
        the last byte plus one. Raises :class:`ExecutionNotFound`."""
        if byte_offset < 0 or byte_limit < 0:
            raise ValueError("byte_offset and byte_limit must be >= 0")
        snap = self._snapshot(execution_id)
        src = _Source(self, execution_id, snap)
        total_bytes = snap.total_bytes
        if byte_offset >= total_bytes:
            line = snap.total_newlines
            return _page(b"", line, line, total_bytes, total_bytes, snap)

        first = src.chunk_at_byte(byte_offset)
        rel = byte_offset - first.start_byte
        while rel < len(first.data) and _is_continuation(first.data[rel]):
            rel += 1  # chunks start and end on character boundaries, so this stays inside
        start_byte = first.start_byte + rel
        start_line = first.start_line + first.data.count(b"\n", 0, rel)
        if start_byte >= total_bytes:
            return _page(b"", start_line, start_line, total_bytes, total_bytes, snap)

        want_end = min(start_byte + byte_limit, total_bytes)
        fetch_end = min(want_end + 3, total_bytes)  # enough to see the boundary and finish one character
        buf = src.collect(first, start_byte, fetch_end)
        end = want_end - start_byte
        if end < len(buf):
            end = _boundary_at_or_before(buf, end)
            if end == 0 and byte_limit > 0:
                end = 1
                while end < len(buf) and _is_continuation(buf[end]):
                    end += 1
        data = buf[:end]
        end_line = start_line + data.count(b"\n", 0, end - 1) + 1 if end else start_line
        return _page(data, start_line, end_line, start_byte, start_byte + end, snap)

    # -- internals: connections ----------------------------------------------------------------

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(
            self.path,
            timeout=self.busy_timeout_ms / 1000.0,
            isolation_level=None,  # autocommit; transactions are explicit
            check_same_thread=False,  # pooled: used by one thread at a time, not always the same one
        )
        conn.execute(f"PRAGMA busy_timeout = {int(self.busy_timeout_ms)}")
        conn.execute("PRAGMA synchronous = NORMAL")
        return conn

    @contextmanager
    def _connection(self) -> Iterator[sqlite3.Connection]:
        """Borrows a connection from the pool (opening one if none is idle) for one operation."""
        with self._pool_lock:
            if self._closed:
                raise RuntimeError("registry is closed")
            conn = self._idle.pop() if self._idle else None
        if conn is None:
            conn = self._connect()
        try:
            yield conn
        finally:
            if conn.in_transaction:  # only after an error inside _write's own handling
                conn.execute("ROLLBACK")
            with self._pool_lock:
                keep = not self._closed and len(self._idle) < _MAX_IDLE_CONNECTIONS
                if keep:
                    self._idle.append(conn)
            if not keep:
                conn.close()

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """One ``BEGIN IMMEDIATE`` transaction, committed on success and rolled back on error."""
        with self._connection() as conn:
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise

    def _init_schema(self) -> None:
        with self._connection() as conn:
            mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        if str(mode).lower() != "wal":
            log.warning("SQLite refused WAL mode for %s (journal_mode=%s)", self.path, mode)
        with self._write() as wconn:
            version = wconn.execute("PRAGMA user_version").fetchone()[0]
            if version == 0:
                for statement in _SCHEMA.split(";"):
                    if statement.strip():
                        wconn.execute(statement)
                wconn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
            elif version > SCHEMA_VERSION:
                raise RuntimeError(
                    f"{self.path} has schema version {version}; this code knows up to {SCHEMA_VERSION}"
                )

    def _count_rows(self, n: int) -> None:
        with self._counter_lock:
            self.chunk_rows_read += n

    # -- internals: output state ---------------------------------------------------------------

    def _lookup_state(self, execution_id: str) -> _OutputState | None:
        with self._states_lock:
            return self._states.get(execution_id)

    def _state(self, execution_id: str) -> _OutputState:
        """The output state of ``execution_id``, loaded from the database if not in memory."""
        with self._states_lock:
            state = self._states.get(execution_id)
            if state is not None:
                return state
            with self._connection() as conn:
                row = conn.execute(
                    "SELECT status, total_bytes, total_newlines, truncated FROM executions"
                    " WHERE execution_id = ?",
                    (execution_id,),
                ).fetchone()
                if row is None:
                    raise ExecutionNotFound(execution_id)
                last = conn.execute(
                    "SELECT seq, substr(data, -1) FROM output_chunks WHERE execution_id = ?"
                    " ORDER BY seq DESC LIMIT 1",
                    (execution_id,),
                ).fetchone()
            status, total_bytes, total_newlines, truncated = row
            state = _OutputState(
                execution_id,
                next_seq=0 if last is None else last[0] + 1,
                flushed_bytes=total_bytes,
                flushed_newlines=total_newlines,
                ends_with_newline=last is None or bytes(last[1]) == b"\n",
                truncated=bool(truncated),
                buffered=status == "running",
            )
            self._states[execution_id] = state
            return state

    def _detach(self, state: _OutputState) -> None:
        with state.lock:
            self._flush_locked(state)
            self._detach_locked(state)

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
        with self._write() as conn:
            cur = conn.execute(
                "UPDATE executions SET total_bytes = ?, total_lines = ?, total_newlines = ?, truncated = ?"
                " WHERE execution_id = ?",
                (
                    start_byte,
                    newlines + (0 if ends_with_newline else 1),
                    newlines,
                    int(state.truncated),
                    state.execution_id,
                ),
            )
            if cur.rowcount == 1:
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
            with state.lock:
                if self._flush_due(state, now):
                    self._flush_locked(state)

    def _snapshot(self, execution_id: str) -> _Snapshot:
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
                    return _Snapshot(
                        state.total_bytes,
                        state.total_lines,
                        state.total_newlines,
                        state.flushed_bytes,
                        pending,
                    )
        # Not buffered here: the database alone is the truth. Output is append-only and the totals are
        # written in the same transaction as the chunks, so chunks below total_bytes never change.
        with self._connection() as conn:
            row = conn.execute(
                "SELECT total_bytes, total_lines, total_newlines FROM executions WHERE execution_id = ?",
                (execution_id,),
            ).fetchone()
        if row is None:
            raise ExecutionNotFound(execution_id)
        return _Snapshot(row[0], row[1], row[2], row[0], None)

    def _record(self, row: Sequence[Any]) -> ExecutionRecord:
        tags = json.loads(row[8]) if row[8] is not None else None
        record = ExecutionRecord(
            execution_id=row[0],
            status=row[1],
            started_at=row[2],
            completed_at=row[3],
            result=row[4],
            error=row[5],
            heap=row[6],
            session=row[7],
            tags=tags,
            duration_ms=row[9],
            heap_in=row[10],
            code_bytes=row[11],
            total_bytes=row[12],
            total_lines=row[13],
            truncated=bool(row[14]),
        )
        state = self._lookup_state(record.execution_id)
        if state is None:
            return record
        with state.lock:
            return _replace_totals(record, state.total_bytes, state.total_lines, state.truncated)


def _replace_totals(
    record: ExecutionRecord, total_bytes: int, total_lines: int, truncated: bool
) -> ExecutionRecord:
    return replace(record, total_bytes=total_bytes, total_lines=total_lines, truncated=truncated)


def _page(
    data: bytes, start_line: int, end_line: int, start_byte: int, end_byte: int, snap: _Snapshot
) -> OutputPage:
    return OutputPage(
        data=data.decode("utf-8", "replace"),
        start_line=start_line,
        end_line=end_line,
        start_byte=start_byte,
        end_byte=end_byte,
        next_line_offset=end_line,
        next_byte_offset=end_byte,
        has_more=end_byte < snap.total_bytes,
        total_lines=snap.total_lines,
        total_bytes=snap.total_bytes,
    )


class _Source:
    """Chunk lookups over one snapshot: flushed chunks (below ``db_bytes``), then the pending one."""

    def __init__(self, registry: Registry, execution_id: str, snap: _Snapshot) -> None:
        self._registry = registry
        self._id = execution_id
        self._snap = snap

    def _one(self, sql: str, params: tuple[Any, ...]) -> _Chunk:
        with self._registry._connection() as conn:
            row = conn.execute(sql, params).fetchone()
        if row is None:  # pruned while we read
            raise ExecutionNotFound(self._id)
        self._registry._count_rows(1)
        return _Chunk(row[0], row[1], row[2], row[3], bytes(row[4]))

    def chunk_at_byte(self, byte: int) -> _Chunk:
        """The chunk holding byte ``byte`` (which exists)."""
        pending = self._snap.pending
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
        pending = self._snap.pending
        if pending is not None and k >= pending.start_line:
            return pending
        return self._one(
            f"SELECT {_CHUNK_COLUMNS} FROM output_chunks WHERE execution_id = ? AND start_line <= ?"
            " AND start_byte < ? ORDER BY start_line DESC, seq DESC LIMIT 1",
            (self._id, k, self._snap.db_bytes),
        )

    def chunks_from(self, first: _Chunk, *, byte_end: int, line_end: int | None = None) -> Iterator[_Chunk]:
        """``first`` and the chunks after it that start before byte ``byte_end`` (and, when given,
        on a line ``<= line_end``): exactly the chunks a page covers, in one range query."""
        yield first
        pending = self._snap.pending
        if first is pending:
            return
        sql = (
            f"SELECT {_CHUNK_COLUMNS} FROM output_chunks"
            " WHERE execution_id = ? AND seq > ? AND start_byte < ?"
        )
        params: tuple[Any, ...] = (self._id, first.seq, min(byte_end, self._snap.db_bytes))
        if line_end is not None:
            sql += " AND start_line <= ?"
            params += (line_end,)
        with self._registry._connection() as conn:
            rows = conn.execute(sql + " ORDER BY seq", params).fetchall()
        self._registry._count_rows(len(rows))
        for row in rows:
            yield _Chunk(row[0], row[1], row[2], row[3], bytes(row[4]))
        if pending is not None and byte_end > pending.start_byte:
            yield pending

    def collect(self, first: _Chunk, start: int, end: int) -> bytes:
        """Bytes ``[start, end)`` reading forward from ``first`` (which holds ``start``)."""
        parts: builtins.list[bytes] = []
        for chunk in self.chunks_from(first, byte_end=end):
            lo = max(start - chunk.start_byte, 0)
            hi = min(end - chunk.start_byte, len(chunk.data))
            if hi > lo:
                parts.append(chunk.data[lo:hi])
        return b"".join(parts)


def _flusher_main(ref: weakref.ReferenceType[Registry], stop: threading.Event, interval: float) -> None:
    """Flushes output buffered longer than ``interval``. Holds the registry only weakly, so a registry
    dropped without ``close()`` is still collected (and the thread ends)."""
    while not stop.wait(interval):
        registry = ref()
        if registry is None:
            return
        try:
            registry._flush_overdue()
        except Exception:  # keep flushing later; the data stays buffered
            log.exception("flushing console output failed")
        finally:
            del registry
