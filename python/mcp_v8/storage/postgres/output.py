"""The output log in PostgreSQL: :class:`PostgresOutputLog`, the ``output_logs`` (totals) and
``output_chunks`` (bytes) tables of :mod:`.schema`, keeping the contract of
:class:`~..output.OutputLog` as the SQLite log does.

No buffering: every :meth:`~PostgresOutputLog.append` is one short transaction that locks the log's
row (``SELECT ... FOR UPDATE``: appends of one log, from any thread or node, are serialized, and the
cap is checked against the true totals), tops up the last chunk (``data = data || ...``) while it
is under ``chunk_bytes``, inserts new chunks for the rest, and writes the new totals. So every
reader on every node sees an append once it returns, :meth:`~PostgresOutputLog.seal` has nothing to
do, and a log is still stored as chunks of about ``chunk_bytes`` (each valid UTF-8 on its own,
with the byte offset and line number at which it starts), not one row per append.

Reads are as the SQLite log's: the totals, then one indexed lookup for the chunk holding the page's
first byte (``(execution_id, start_byte)``) or line (``(execution_id, start_line, seq)``), then one
range query for just the chunks the page covers: a page costs the same at line 10 as at line 10
million. A chunk may grow while a page is read; reads clip every chunk to the totals they read
first, so a page is one consistent prefix of the log.
"""

from __future__ import annotations

import builtins
from collections.abc import Iterable, Iterator
from typing import Any

import psycopg

from ..executions import DuplicateExecution, ExecutionNotFound
from ..output import DEFAULT_MAX_OUTPUT_BYTES, OutputPage, OutputTotals, truncation_marker
from ..output_pages import Chunk as _Chunk
from ..output_pages import Extent as _OutputExtent
from ..output_pages import boundary_at_or_before as _boundary_at_or_before
from ..output_pages import bytes_page, lines_page
from ..sqlite import Closing
from .database import PostgresDatabase, Row
from .schema import open_postgres

__all__ = ["DEFAULT_PG_CHUNK_BYTES", "PostgresOutputLog"]

# Smaller than SQLite's 64 KiB: topping up the last chunk rewrites it, so its size bounds the
# bytes written per append.
DEFAULT_PG_CHUNK_BYTES = 16 * 1024
_DELETE_BATCH = 500
_CHUNK_COLUMNS = "seq, start_byte, start_line, n_lines, data"


class PostgresOutputLog(Closing):
    """An :class:`~..output.OutputLog` in a PostgreSQL database. Safe to share between threads.

    ``database`` is a :class:`~.database.PostgresDatabase` opened by :func:`~.schema.open_postgres`
    and shared with the other stores (closed by whoever opened it), or a connection URL, whose
    database the log then opens and closes itself. ``chunk_rows_read`` counts chunk rows fetched.
    """

    def __init__(
        self,
        database: PostgresDatabase | str,
        *,
        schema: str | None = None,
        max_output_bytes: int = DEFAULT_MAX_OUTPUT_BYTES,
        chunk_bytes: int = DEFAULT_PG_CHUNK_BYTES,
    ) -> None:
        if max_output_bytes < 1:
            raise ValueError("max_output_bytes must be >= 1")
        if chunk_bytes < 4:
            raise ValueError("chunk_bytes must be >= 4 (one UTF-8 character)")
        self.max_output_bytes = max_output_bytes
        self.chunk_bytes = chunk_bytes
        self.chunk_rows_read = 0
        self._owns_db = not isinstance(database, PostgresDatabase)
        self._db = (
            database if isinstance(database, PostgresDatabase) else open_postgres(database, schema=schema)
        )
        self._closed = False

    def close(self) -> None:
        """Releases the database when the log opened it. Later calls raise ``RuntimeError``."""
        if not self._closed:
            self._closed = True
            if self._owns_db:
                self._db.close()

    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeError("the output log is closed")

    # -- writes ----------------------------------------------------------------------------------

    def create(self, execution_id: str) -> None:
        """Starts the empty log of ``execution_id``. Raises :class:`~..executions.DuplicateExecution`."""
        self._check_open()
        try:
            self._db.run("INSERT INTO output_logs (execution_id) VALUES (%s)", (execution_id,))
        except psycopg.errors.UniqueViolation:
            raise DuplicateExecution(execution_id) from None

    def append(self, execution_id: str, text: str) -> None:
        """Appends console text, written through in one transaction. Once the log holds
        ``max_output_bytes``, one truncation marker line is stored and later text is dropped.
        Raises :class:`~..executions.ExecutionNotFound` for an id without a log."""
        if not text:
            return
        self._check_open()
        data = text.encode("utf-8", "replace")  # a lone surrogate becomes "?"
        with self._db.transaction() as conn:
            row = conn.execute(
                "SELECT total_bytes, total_lines, total_newlines, truncated, chunks, last_chunk_bytes"
                " FROM output_logs WHERE execution_id = %s FOR UPDATE",
                (execution_id,),
            ).fetchone()
            if row is None:
                raise ExecutionNotFound(execution_id)
            total_bytes, total_lines, newlines, truncated, chunks, last_len = (int(v) for v in row)
            if truncated:
                return
            ends_with_newline = total_lines == newlines  # also when there is no output
            room = self.max_output_bytes - total_bytes
            if len(data) > room:
                data = data[: _boundary_at_or_before(data, room)]
                if data:
                    ends_with_newline = data.endswith(b"\n")
                marker = truncation_marker(self.max_output_bytes).encode("utf-8")
                data += marker if ends_with_newline else b"\n" + marker
                truncated = 1
            pos = 0
            if chunks and last_len < self.chunk_bytes:  # top up the last chunk
                pos = _boundary_at_or_before(data, min(self.chunk_bytes - last_len, len(data)))
                if pos:
                    conn.execute(
                        "UPDATE output_chunks SET data = data || %s, n_lines = n_lines + %s"
                        " WHERE execution_id = %s AND seq = %s",
                        (data[:pos], data.count(b"\n", 0, pos), execution_id, chunks - 1),
                    )
                    last_len += pos
            start_byte, line = total_bytes + pos, newlines + data.count(b"\n", 0, pos)
            rows: builtins.list[tuple[str, int, int, int, int, bytes]] = []
            while pos < len(data):
                end = min(pos + self.chunk_bytes, len(data))
                if end < len(data):
                    end = _boundary_at_or_before(data, end)
                piece = data[pos:end]
                n = piece.count(b"\n")
                rows.append((execution_id, chunks, start_byte, line, n, piece))
                chunks, start_byte, line, pos, last_len = (
                    chunks + 1,
                    start_byte + len(piece),
                    line + n,
                    end,
                    len(piece),
                )
            if rows:
                with conn.cursor() as cur:
                    cur.executemany(
                        f"INSERT INTO output_chunks (execution_id, {_CHUNK_COLUMNS}) VALUES (%s, %s, %s, %s, %s, %s)",
                        rows,
                    )
            conn.execute(
                "UPDATE output_logs SET total_bytes = %s, total_lines = %s, total_newlines = %s, truncated = %s,"
                " chunks = %s, last_chunk_bytes = %s WHERE execution_id = %s",
                (
                    start_byte,
                    line + (0 if data.endswith(b"\n") else 1),
                    line,
                    bool(truncated),
                    chunks,
                    last_len,
                    execution_id,
                ),
            )

    def seal(self, execution_id: str) -> None:
        """Nothing to do: every append is visible to every reader once it returns."""

    def delete(self, execution_ids: Iterable[str]) -> int:
        """Removes the logs of ``execution_ids`` and their output; returns how many there were."""
        ids = sorted({i for i in execution_ids if "\x00" not in i})
        deleted = 0
        for i in range(0, len(ids), _DELETE_BATCH):
            batch = ids[i : i + _DELETE_BATCH]
            with self._db.transaction() as conn:
                deleted += conn.execute(
                    "DELETE FROM output_logs WHERE execution_id = ANY(%s)", (batch,)
                ).rowcount
                conn.execute("DELETE FROM output_chunks WHERE execution_id = ANY(%s)", (batch,))
        return deleted

    # -- reads -----------------------------------------------------------------------------------

    def totals(self, execution_id: str) -> OutputTotals:
        self._check_open()
        extent = self._extent(execution_id)
        return OutputTotals(extent.total_bytes, extent.total_lines, extent.truncated)

    def read_lines(self, execution_id: str, line_offset: int = 0, line_limit: int = 1000) -> OutputPage:
        """A page of whole lines (:func:`~..output_pages.lines_page`). Raises
        :class:`~..executions.ExecutionNotFound`."""
        self._check_open()
        extent = self._extent(execution_id)
        return lines_page(_ChunkReader(self, execution_id, extent), extent, line_offset, line_limit)

    def read_bytes(self, execution_id: str, byte_offset: int = 0, byte_limit: int = 65536) -> OutputPage:
        """A page of bytes never splitting a character (:func:`~..output_pages.bytes_page`).
        Raises :class:`~..executions.ExecutionNotFound`."""
        self._check_open()
        extent = self._extent(execution_id)
        return bytes_page(_ChunkReader(self, execution_id, extent), extent, byte_offset, byte_limit)

    def _extent(self, execution_id: str) -> _OutputExtent:
        rows = self._db.run(
            "SELECT total_bytes, total_lines, total_newlines, truncated FROM output_logs WHERE execution_id = %s",
            (execution_id,),
        )
        if not rows:
            raise ExecutionNotFound(execution_id)
        b, lines, newlines, truncated = rows[0]
        return _OutputExtent(int(b), int(lines), int(newlines), bool(truncated), int(b), None)


class _ChunkReader:
    """Chunk lookups within one extent, each chunk clipped to the extent's bytes."""

    def __init__(self, output: PostgresOutputLog, execution_id: str, extent: _OutputExtent) -> None:
        self._output = output
        self._id = execution_id
        self._end = extent.total_bytes

    def _chunk(self, row: Row) -> _Chunk:
        seq, start_byte, start_line, n_lines, data = (
            int(row[0]),
            int(row[1]),
            int(row[2]),
            int(row[3]),
            bytes(row[4]),
        )
        if start_byte + len(data) > self._end:  # grown by an append after the totals were read
            data = data[: max(self._end - start_byte, 0)]
            n_lines = data.count(b"\n")
        return _Chunk(seq, start_byte, start_line, n_lines, data)

    def _fetch(self, sql: str, params: tuple[Any, ...]) -> builtins.list[Row]:
        with self._output._db.connection() as conn, conn.cursor(binary=True) as cur:
            rows = cur.execute(sql, params).fetchall()
        self._output.chunk_rows_read += len(rows)  # a statistic: a lost update under races is fine
        return rows

    def _one(self, sql: str, params: tuple[Any, ...]) -> _Chunk:
        rows = self._fetch(sql, params)
        if not rows:  # deleted while we read
            raise ExecutionNotFound(self._id)
        return self._chunk(rows[0])

    def chunk_at_byte(self, byte: int) -> _Chunk:
        return self._one(
            f"SELECT {_CHUNK_COLUMNS} FROM output_chunks WHERE execution_id = %s AND start_byte <= %s"
            " ORDER BY start_byte DESC LIMIT 1",
            (self._id, byte),
        )

    def chunk_with_newline(self, k: int) -> _Chunk:
        """The chunk holding the ``k``-th newline (0-based, which exists)."""
        return self._one(
            f"SELECT {_CHUNK_COLUMNS} FROM output_chunks WHERE execution_id = %s AND start_line <= %s"
            " AND start_byte < %s ORDER BY start_line DESC, seq DESC LIMIT 1",
            (self._id, k, self._end),
        )

    def chunks_from(self, first: _Chunk, *, byte_end: int, line_end: int | None = None) -> Iterator[_Chunk]:
        """``first`` and the chunks after it that start before byte ``byte_end`` (and, when given,
        on a line ``<= line_end``), in one range query."""
        yield first
        if first.start_byte + len(first.data) >= min(byte_end, self._end):
            return
        sql = f"SELECT {_CHUNK_COLUMNS} FROM output_chunks WHERE execution_id = %s AND seq > %s AND start_byte < %s"
        params: tuple[Any, ...] = (self._id, first.seq, min(byte_end, self._end))
        if line_end is not None:
            sql += " AND start_line <= %s"
            params += (line_end,)
        for row in self._fetch(sql + " ORDER BY seq", params):
            yield self._chunk(row)
