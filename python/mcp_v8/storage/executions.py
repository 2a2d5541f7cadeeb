"""The execution store: one record per execution and its state machine.

An execution is ``running`` from the moment it is recorded until its first terminal transition
(``completed``, ``failed``, ``cancelled``, ``timed_out``); the store makes that transition atomic, so
whoever reports second (a worker after a cancel, a cancel after a crash) changes nothing. Console
output is not here: it is the output log's (:mod:`.output`), keyed by the same execution id.

Sessions are not stored apart: a session is the ``session`` field of its executions, and what the
store says about one (:meth:`ExecutionStore.sessions`, :meth:`ExecutionStore.session_log`) is read
from the retained executions by query, so recording an execution costs no extra statement (only an
index entry, when it has a session) and a pruned one leaves no trace. The listings page by keyset
(:mod:`.paging`): an opaque cursor, never an offset.

:class:`ExecutionStore` is the contract; :class:`SQLiteExecutionStore` keeps the records in the
``executions`` table of the service's SQLite database (:mod:`.schema`) and touches no other table.
"""

from __future__ import annotations

import builtins
import json
import os
import sqlite3
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any, Literal, Protocol, get_args, runtime_checkable

from ..js_error import JsError
from .heaps import HeapNotFound
from .paging import Page, decode_cursor, encode_cursor, is_row_id, is_text, is_timestamp
from .schema import open_database
from .sqlite import Closing, SQLiteDatabase

__all__ = [
    "TERMINAL_STATUSES",
    "DuplicateExecution",
    "ExecutionNotFound",
    "ExecutionRecord",
    "ExecutionStatus",
    "ExecutionStore",
    "SQLiteExecutionStore",
    "SessionSummary",
    "TerminalStatus",
]

ExecutionStatus = Literal["running", "completed", "failed", "cancelled", "timed_out"]
TerminalStatus = Literal["completed", "failed", "cancelled", "timed_out"]
TERMINAL_STATUSES: frozenset[str] = frozenset(get_args(TerminalStatus))

_DELETE_BATCH = 200
_COLUMNS = (
    "execution_id, status, started_at, completed_at, result, error, heap_out, session, tags, "
    "duration_ms, heap_in, code_bytes, js_error"
)
_INSERT = (
    "INSERT INTO executions (execution_id, status, started_at, heap_in, session, tags, code_bytes, owner)"
)
# Paged listings: each name is a cursor's ``list``, and its position is the sort key of an item.
_EXECUTIONS, _SESSION_LOG, _SESSIONS = "executions", "session-log", "sessions"
_RECORD_POSITION = (is_timestamp, is_row_id)  # (started_at, id)
_SESSION_POSITION = (is_timestamp, is_text)  # (last activity, session)
# Sessions by latest activity. The aggregate walks the index by session (schema version 3), so
# executions without a session cost it nothing; only the sessions of the page look up their latest
# heap, walking their entries of that index backwards from the newest until one produced a heap.
_SESSIONS_SQL = """
WITH activity AS (
    SELECT session, count(*) AS executions, min(started_at) AS first_at,
           max(max(started_at), coalesce(max(completed_at), '')) AS last_at
    FROM executions WHERE session IS NOT NULL GROUP BY session
), page AS MATERIALIZED (
    SELECT session, executions, first_at, last_at FROM activity {where}
    ORDER BY last_at DESC, session LIMIT ?
)
SELECT session, executions, first_at, last_at,
       (SELECT heap_out FROM executions AS e
        WHERE e.session = page.session AND e.heap_out IS NOT NULL
        ORDER BY e.started_at DESC, e.id DESC LIMIT 1)
FROM page ORDER BY last_at DESC, session
"""


class ExecutionNotFound(KeyError):
    """No execution (or no output log of an execution) is recorded under this id."""


class DuplicateExecution(ValueError):
    """An execution (or an output log of an execution) with this id is already recorded."""


@dataclass(frozen=True)
class ExecutionRecord:
    """One execution as recorded. ``heap`` is the snapshot key it produced; ``heap_in`` the one it
    restored; ``js_error`` the script's structured error, when it ended on one (``error`` is then
    its stack). Timestamps are ISO-8601 UTC with millisecond precision and a ``Z``."""

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
    js_error: JsError | None = None

    @property
    def is_terminal(self) -> bool:
        return self.status != "running"


@dataclass(frozen=True)
class SessionSummary:
    """One session, as its retained executions tell it. ``last_activity_at`` is the latest
    ``started_at`` or ``completed_at`` among them; ``latest_heap`` the heap recorded by the last
    of them (in the session log's order) that produced one, or None. Like any execution's ``heap``,
    it is a key as recorded: the heap store prunes blobs by its own rule, so it may name one that
    is no longer stored."""

    session: str
    executions: int
    first_activity_at: str
    last_activity_at: str
    latest_heap: str | None


@runtime_checkable
class ExecutionStore(Protocol):
    """Execution records and their state machine (``running`` → one terminal status).

    Contract every backend keeps:

    * :meth:`create` records ``running`` with ``started_at`` = now; an id recorded already raises
      :class:`DuplicateExecution` and changes nothing.
    * :meth:`finish` is the only way out of ``running`` besides :meth:`fail_running_on_startup`, and
      the first terminal transition wins: among any number of concurrent calls for one id (threads or
      processes) exactly one returns True and its status, result, error, JS error, heap and duration
      are what every later read sees; the others, and calls for a terminal or unknown id, return False and
      change nothing.
    * :meth:`list` and :meth:`list_page` are newest first by ``started_at``, ties broken by the order
      of :meth:`create` (later first); :meth:`session_log` is the reverse, oldest first;
      :meth:`sessions` is by last activity, latest first, ties by session name (code point order).
    * Paged listings (:class:`~.paging.Page`) continue from an opaque cursor that a page of the same
      listing returned: following ``next_cursor`` until it is None yields every item present
      throughout exactly once, in order, however many share a timestamp. A cursor that no page of that
      listing could have returned raises :class:`~.paging.InvalidCursor`.
    * Sessions are derived from the retained executions (those with a ``session``), never stored
      apart: a pruned execution leaves no trace in them.
    * :meth:`prunable` and :meth:`delete` never touch a ``running`` execution.
    * Every method may be called from many threads at once.

    A PostgreSQL backend keeps the same table (``tags`` as ``jsonb``, timestamps as ``timestamptz``,
    an identity column for the insertion order, session names compared ``COLLATE "C"``, which is
    code point order as SQLite's); :meth:`finish` is one
    ``UPDATE ... WHERE execution_id = $1 AND status = 'running'`` whose row count says who won, which
    holds under READ COMMITTED because the second updater re-checks the ``WHERE`` after the first
    commits.
    """

    def create(
        self,
        execution_id: str,
        *,
        session: str | None = None,
        tags: dict[str, str] | None = None,
        heap_in: str | None = None,
        code_bytes: int = 0,
        owner: str | None = None,
        require_heap: bool = False,
    ) -> None:
        """Records a new execution as ``running``, started now, run by the process ``owner``.
        With ``require_heap``, only while the heap index of the same database (``heaps``, see
        :mod:`.heap_index`) holds ``heap_in``, in one step with that check: otherwise it raises
        :class:`~.heaps.HeapNotFound` and records nothing. A heap's deletion
        (:meth:`~.heap_index.HeapIndex.remove`) serialises with it: the heap is gone before the
        record exists, or the record exists (and the heap is in use) before the deletion looks."""
        ...

    def finish(
        self,
        execution_id: str,
        status: TerminalStatus,
        *,
        result: str | None = None,
        error: str | None = None,
        heap_out: str | None = None,
        duration_ms: float | None = None,
        js_error: JsError | None = None,
    ) -> ExecutionRecord | None:
        """Records the first terminal transition and returns the terminal record; None (and
        nothing changes) when already terminal or unknown. ``duration_ms`` defaults to the time
        since ``started_at``; ``js_error`` is kept as a JSON object and read back equal."""
        ...

    def get(self, execution_id: str) -> ExecutionRecord | None:
        """The record of ``execution_id``, or None."""
        ...

    def list(self, limit: int = 100, status: ExecutionStatus | None = None) -> builtins.list[ExecutionRecord]:
        """Up to ``limit`` records (of ``status`` when given), newest first."""
        ...

    def list_page(
        self,
        limit: int = 100,
        *,
        status: ExecutionStatus | None = None,
        session: str | None = None,
        cursor: str | None = None,
    ) -> Page[ExecutionRecord]:
        """A page of up to ``limit`` (>= 1) records, newest first, of ``status`` and of ``session``
        when given, after ``cursor`` when given."""
        ...

    def sessions(self, limit: int = 100, *, cursor: str | None = None) -> Page[SessionSummary]:
        """A page of up to ``limit`` (>= 1) sessions, latest activity first, after ``cursor``."""
        ...

    def session_log(
        self, session: str, limit: int = 100, *, cursor: str | None = None
    ) -> Page[ExecutionRecord] | None:
        """A page of up to ``limit`` (>= 1) records of ``session``, oldest first, after ``cursor``;
        None when no retained execution belongs to ``session``."""
        ...

    def fail_running_on_startup(self, reason: str) -> int:
        """Marks every ``running`` execution ``failed`` with ``reason``; returns how many."""
        ...

    def running_owners(self) -> set[str | None]:
        """The owners of ``running`` executions (None: executions recorded without one)."""
        ...

    def fail_running_of(self, owners: Collection[str | None], reason: str) -> int:
        """Marks the ``running`` executions of ``owners`` (None: those without an owner)
        ``failed`` with ``reason``; returns how many."""
        ...

    def heaps_used_since(self, max_age_seconds: float) -> set[str]:
        """The heaps that executions started (``heap_in``) or produced (``heap_out``) within the
        last ``max_age_seconds``, running ones included: in use by the registry's account."""
        ...

    def prunable(
        self, max_age_seconds: float | None = None, max_count: int | None = None
    ) -> builtins.list[str]:
        """Ids of terminal executions that completed more than ``max_age_seconds`` ago or that are
        not among the newest ``max_count`` terminal ones."""
        ...

    def delete(self, execution_ids: Iterable[str]) -> int:
        """Deletes the terminal executions among ``execution_ids``; returns how many."""
        ...

    def close(self) -> None:
        """Releases what the store holds. Idempotent."""
        ...


def _now() -> datetime:
    return datetime.now(timezone.utc)


def _iso(dt: datetime) -> str:
    return dt.astimezone(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _parse_iso(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


class SQLiteExecutionStore(Closing):
    """An :class:`ExecutionStore` in the ``executions`` table of the service's SQLite database.

    ``database`` is a :class:`~.sqlite.SQLiteDatabase` opened by :func:`~.schema.open_database` and
    shared with the output log (closed by whoever opened it), or a data directory, whose database
    the store then opens and closes itself.
    """

    def __init__(self, database: SQLiteDatabase | str | os.PathLike[str]) -> None:
        self._owns_db = not isinstance(database, SQLiteDatabase)
        self._db = open_database(database) if not isinstance(database, SQLiteDatabase) else database

    def close(self) -> None:
        if self._owns_db:
            self._db.close()

    def create(
        self,
        execution_id: str,
        *,
        session: str | None = None,
        tags: dict[str, str] | None = None,
        heap_in: str | None = None,
        code_bytes: int = 0,
        owner: str | None = None,
        require_heap: bool = False,
    ) -> None:
        """Records a new execution as ``running``, started now, run by the process ``owner``.
        Raises :class:`DuplicateExecution`; with ``require_heap``, :class:`~.heaps.HeapNotFound`
        unless the heap index holds ``heap_in`` (one statement: SQLite runs it under the
        database's write lock, which the index's removal holds across its check)."""
        tags_json = json.dumps(tags, ensure_ascii=False, sort_keys=True) if tags is not None else None
        values = (execution_id, _iso(_now()), heap_in, session, tags_json, code_bytes, owner)
        try:
            if not require_heap or heap_in is None:
                self._db.run(f"{_INSERT} VALUES (?, 'running', ?, ?, ?, ?, ?, ?)", values)
                return
            rows = self._db.run(
                f"{_INSERT} SELECT ?, 'running', ?, ?, ?, ?, ?, ?"
                " WHERE EXISTS (SELECT 1 FROM heaps WHERE key = ?) RETURNING id",
                (*values, heap_in),
            )
        except sqlite3.IntegrityError:
            raise DuplicateExecution(execution_id) from None
        if not rows:
            raise HeapNotFound(heap_in)

    def finish(
        self,
        execution_id: str,
        status: TerminalStatus,
        *,
        result: str | None = None,
        error: str | None = None,
        heap_out: str | None = None,
        duration_ms: float | None = None,
        js_error: JsError | None = None,
    ) -> ExecutionRecord | None:
        """Records the first terminal transition of a running execution and returns its terminal
        record (read in the same statement, so a caller can answer from it without reading again);
        returns None (and changes nothing) when it is already terminal or unknown. ``duration_ms``
        defaults to the wall-clock time since ``started_at``."""
        if status not in TERMINAL_STATUSES:
            raise ValueError(f"not a terminal status: {status!r}")
        update = (
            "UPDATE executions SET status = ?, completed_at = ?, result = ?, error = ?, heap_out = ?,"
            f" duration_ms = ?, js_error = ? WHERE execution_id = ? AND status = 'running' RETURNING {_COLUMNS}"
        )
        js = _js_error_json(js_error)
        if duration_ms is not None:  # the usual case: one statement
            rows = self._db.run(
                update, (status, _iso(_now()), result, error, heap_out, duration_ms, js, execution_id)
            )
            return _record(rows[0]) if rows else None
        now = _now()
        with self._db.write() as conn:
            row = conn.execute(
                "SELECT started_at FROM executions WHERE execution_id = ? AND status = 'running'",
                (execution_id,),
            ).fetchone()
            if row is not None:
                duration_ms = (now - _parse_iso(row[0])).total_seconds() * 1000.0
            rows = conn.execute(  # fetchall: the statement completes before the commit
                update, (status, _iso(now), result, error, heap_out, duration_ms, js, execution_id)
            ).fetchall()
        return _record(rows[0]) if rows else None

    def get(self, execution_id: str) -> ExecutionRecord | None:
        """The record of ``execution_id``, or None."""
        rows = self._db.run(f"SELECT {_COLUMNS} FROM executions WHERE execution_id = ?", (execution_id,))
        return _record(rows[0]) if rows else None

    def list(self, limit: int = 100, status: ExecutionStatus | None = None) -> builtins.list[ExecutionRecord]:
        """Up to ``limit`` records, newest first (by ``started_at``, then by insertion order)."""
        if limit < 0:
            raise ValueError("limit must be >= 0")
        sql = f"SELECT {_COLUMNS} FROM executions"
        params: tuple[Any, ...] = ()
        if status is not None:
            sql += " WHERE status = ?"
            params = (status,)
        sql += " ORDER BY started_at DESC, id DESC LIMIT ?"
        with self._db.connection() as conn:
            rows = conn.execute(sql, (*params, limit)).fetchall()
        return [_record(row) for row in rows]

    def list_page(
        self,
        limit: int = 100,
        *,
        status: ExecutionStatus | None = None,
        session: str | None = None,
        cursor: str | None = None,
    ) -> Page[ExecutionRecord]:
        """A page of up to ``limit`` records, newest first (by ``started_at``, then by insertion
        order), of ``status`` and of ``session`` when given, after ``cursor`` when given. Raises
        :class:`~.paging.InvalidCursor`."""
        _check_limit(limit)
        where: builtins.list[str] = []
        params: builtins.list[Any] = []
        if status is not None:
            where.append("status = ?")
            params.append(status)
        if session is not None:
            where.append("session = ?")
            params.append(session)
        if cursor is not None:
            at, row_id = decode_cursor(_EXECUTIONS, cursor, _RECORD_POSITION)
            where.append("started_at <= ? AND (started_at < ? OR id < ?)")
            params += [at, at, row_id]
        sql = f"SELECT {_COLUMNS}, id FROM executions"
        if where:
            sql += " WHERE " + " AND ".join(where)
        rows = self._db.run(sql + " ORDER BY started_at DESC, id DESC LIMIT ?", (*params, limit + 1))
        return _record_page(_EXECUTIONS, rows, limit)

    def session_log(
        self, session: str, limit: int = 100, *, cursor: str | None = None
    ) -> Page[ExecutionRecord] | None:
        """A page of up to ``limit`` records of ``session``, oldest first (by ``started_at``, then by
        insertion order), after ``cursor`` when given; None when no retained execution belongs to
        ``session``. Raises :class:`~.paging.InvalidCursor`."""
        _check_limit(limit)
        sql = f"SELECT {_COLUMNS}, id FROM executions WHERE session = ?"
        params: builtins.list[Any] = [session]
        if cursor is not None:
            at, row_id = decode_cursor(_SESSION_LOG, cursor, _RECORD_POSITION)
            sql += " AND started_at >= ? AND (started_at > ? OR id > ?)"
            params += [at, at, row_id]
        rows = self._db.run(sql + " ORDER BY started_at, id LIMIT ?", (*params, limit + 1))
        if not rows and not self._db.run("SELECT 1 FROM executions WHERE session = ? LIMIT 1", (session,)):
            return None
        return _record_page(_SESSION_LOG, rows, limit)

    def sessions(self, limit: int = 100, *, cursor: str | None = None) -> Page[SessionSummary]:
        """A page of up to ``limit`` sessions, latest activity first (ties by session name), after
        ``cursor`` when given. Raises :class:`~.paging.InvalidCursor`.

        Every page aggregates the executions of every session (the order is by an aggregate, so no
        index can hand it over sorted): linear in the retained executions that have a session."""
        _check_limit(limit)
        where = ""
        params: builtins.list[Any] = []
        if cursor is not None:
            last_at, session = decode_cursor(_SESSIONS, cursor, _SESSION_POSITION)
            where = "WHERE last_at <= ? AND (last_at < ? OR session > ?)"
            params = [last_at, last_at, session]
        rows = self._db.run(_SESSIONS_SQL.format(where=where), (*params, limit + 1))
        items = [_session(row) for row in rows[:limit]]
        last = items[-1] if len(rows) > limit else None
        return Page(items, encode_cursor(_SESSIONS, [last.last_activity_at, last.session]) if last else None)

    def fail_running_on_startup(self, reason: str) -> int:
        """Marks every ``running`` execution ``failed`` with ``reason`` (after a restart nothing can
        still be running them); returns how many. Call before accepting requests."""
        with self._db.write() as conn:
            cur = conn.execute(
                "UPDATE executions SET status = 'failed', error = ?, completed_at = ?"
                " WHERE status = 'running'",
                (reason, _iso(_now())),
            )
            return cur.rowcount

    def running_owners(self) -> set[str | None]:
        rows = self._db.run("SELECT DISTINCT owner FROM executions WHERE status = 'running'")
        return {None if r[0] is None else str(r[0]) for r in rows}

    def fail_running_of(self, owners: Collection[str | None], reason: str) -> int:
        named = sorted({o for o in owners if o is not None})
        unowned = None in owners
        where = []
        if named:
            where.append(f"owner IN ({', '.join('?' * len(named))})")
        if unowned:
            where.append("owner IS NULL")
        if not where:
            return 0
        with self._db.write() as conn:
            cur = conn.execute(
                "UPDATE executions SET status = 'failed', error = ?, completed_at = ?"
                f" WHERE status = 'running' AND ({' OR '.join(where)})",
                (reason, _iso(_now()), *named),
            )
            return cur.rowcount

    def heaps_used_since(self, max_age_seconds: float) -> set[str]:
        cutoff = _iso(_now() - timedelta(seconds=max_age_seconds))
        rows = self._db.run(
            "SELECT heap_in FROM executions WHERE heap_in IS NOT NULL AND (started_at >= ? OR status = 'running')"
            " UNION SELECT heap_out FROM executions WHERE heap_out IS NOT NULL AND completed_at >= ?",
            (cutoff, cutoff),
        )
        return {str(r[0]) for r in rows}

    def prunable(
        self, max_age_seconds: float | None = None, max_count: int | None = None
    ) -> builtins.list[str]:
        """Ids of terminal executions that completed more than ``max_age_seconds`` ago or that are
        not among the newest ``max_count`` terminal executions (running ones do not count), sorted."""
        if max_count is not None and max_count < 0:
            raise ValueError("max_count must be >= 0")
        doomed: set[str] = set()
        with self._db.connection() as conn:
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
        return sorted(doomed)

    def delete(self, execution_ids: Iterable[str]) -> int:
        """Deletes the terminal executions among ``execution_ids``; returns how many."""
        ids = builtins.list(execution_ids)
        deleted = 0
        for i in range(0, len(ids), _DELETE_BATCH):
            batch = ids[i : i + _DELETE_BATCH]
            marks = ",".join("?" * len(batch))
            with self._db.write() as conn:
                cur = conn.execute(
                    f"DELETE FROM executions WHERE status != 'running' AND execution_id IN ({marks})", batch
                )
                deleted += cur.rowcount
        return deleted


def _check_limit(limit: int) -> None:
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
        raise ValueError(f"limit must be an integer >= 1, not {limit!r}")


def _record_page(listing: str, rows: Sequence[Sequence[Any]], limit: int) -> Page[ExecutionRecord]:
    """The records of ``rows`` (columns ``_COLUMNS`` then ``id``, one more than ``limit`` when a next
    page exists) as a page of ``listing``."""
    items = [_record(row) for row in rows[:limit]]
    next_cursor = None
    if len(rows) > limit:
        last = rows[limit - 1]
        next_cursor = encode_cursor(listing, [last[2], last[13]])  # (started_at, id)
    return Page(items, next_cursor)


def _session(row: Sequence[Any]) -> SessionSummary:
    return SessionSummary(
        session=row[0],
        executions=row[1],
        first_activity_at=row[2],
        last_activity_at=row[3],
        latest_heap=row[4],
    )


def _record(row: Sequence[Any]) -> ExecutionRecord:
    return ExecutionRecord(
        execution_id=row[0],
        status=row[1],
        started_at=row[2],
        completed_at=row[3],
        result=row[4],
        error=row[5],
        heap=row[6],
        session=row[7],
        tags=json.loads(row[8]) if row[8] is not None else None,
        duration_ms=row[9],
        heap_in=row[10],
        code_bytes=row[11],
        js_error=JsError.from_dict(json.loads(row[12])) if row[12] is not None else None,
    )


def _js_error_json(js_error: JsError | None) -> str | None:
    return None if js_error is None else json.dumps(js_error.to_dict(), ensure_ascii=False)
