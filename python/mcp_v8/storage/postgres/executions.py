"""The execution store in PostgreSQL: :class:`PostgresExecutionStore`, the ``executions`` table of
:mod:`.schema`, keeping the contract of :class:`~..executions.ExecutionStore` as the SQLite store
does.

Every method is one autocommit statement. :meth:`~PostgresExecutionStore.finish` is one
``UPDATE ... WHERE execution_id = %s AND status = 'running' RETURNING ...``: under READ COMMITTED a
second updater waits for the first to commit, re-checks the ``WHERE`` and finds nothing, so the
first terminal transition wins across threads and nodes. Timestamps come from :func:`_now` (the
node's clock, truncated to milliseconds, as the SQLite store stamps them), so they compare in SQL as
the ISO strings the records and cursors carry.
"""

from __future__ import annotations

import builtins
import json
from collections.abc import Collection, Iterable, Sequence
from datetime import datetime, timedelta, timezone
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from ...js_error import JsError
from ..executions import (
    TERMINAL_STATUSES,
    DuplicateExecution,
    ExecutionRecord,
    ExecutionStatus,
    SessionSummary,
    TerminalStatus,
)
from ..heaps import HeapNotFound
from ..paging import InvalidCursor, Page, decode_cursor, encode_cursor, is_row_id, is_text, is_timestamp
from ..sqlite import Closing
from .database import PostgresDatabase, Row
from .schema import open_postgres

__all__ = ["PostgresExecutionStore"]

_DELETE_BATCH = 500
_COLUMNS = (
    "execution_id, status, started_at, completed_at, result, error, heap_out, session, tags, "
    "duration_ms, heap_in, code_bytes, js_error"
)
_INSERT = (
    "INSERT INTO executions (execution_id, status, started_at, heap_in, session, tags, code_bytes, owner)"
)
_EXECUTIONS, _SESSION_LOG, _SESSIONS = "executions", "session-log", "sessions"
_RECORD_POSITION = (is_timestamp, is_row_id)
_SESSION_POSITION = (is_timestamp, is_text)
_SESSIONS_SQL = """
WITH activity AS (
    SELECT session, count(*) AS executions, min(started_at) AS first_at,
           greatest(max(started_at), max(completed_at)) AS last_at
    FROM executions WHERE session IS NOT NULL GROUP BY session
), page AS MATERIALIZED (
    SELECT session, executions, first_at, last_at FROM activity {where}
    ORDER BY last_at DESC, session LIMIT %s
)
SELECT session, executions, first_at, last_at,
       (SELECT heap_out FROM executions AS e
        WHERE e.session = page.session AND e.heap_out IS NOT NULL
        ORDER BY e.started_at DESC, e.id DESC LIMIT 1)
FROM page ORDER BY last_at DESC, session
"""


def _now() -> datetime:
    """The time records are stamped with (tests pin it)."""
    return datetime.now(timezone.utc)


def _ms(dt: datetime) -> datetime:
    return dt.astimezone(timezone.utc).replace(microsecond=dt.microsecond - dt.microsecond % 1000)


def _iso(dt: datetime | None) -> str | None:
    if dt is None:
        return None
    return dt.astimezone(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _at(text: str) -> datetime:
    """A cursor's timestamp (already matched by ``is_timestamp``) as a datetime."""
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise InvalidCursor(
            "invalid cursor: its position is malformed; pass the next_cursor of an earlier page unchanged"
        ) from None


def _check_limit(limit: int) -> None:
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
        raise ValueError(f"limit must be an integer >= 1, not {limit!r}")


class PostgresExecutionStore(Closing):
    """An :class:`~..executions.ExecutionStore` in the ``executions`` table of a PostgreSQL database.

    ``database`` is a :class:`~.database.PostgresDatabase` opened by :func:`~.schema.open_postgres`
    and shared with the other stores (closed by whoever opened it), or a connection URL, whose
    database the store then opens and closes itself.
    """

    def __init__(self, database: PostgresDatabase | str, *, schema: str | None = None) -> None:
        self._owns_db = not isinstance(database, PostgresDatabase)
        self._db = (
            database if isinstance(database, PostgresDatabase) else open_postgres(database, schema=schema)
        )

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
        Raises :class:`~..executions.DuplicateExecution`; with ``require_heap``,
        :class:`~..heaps.HeapNotFound` unless the heap index holds ``heap_in``: the statement
        takes the index row's ``FOR KEY SHARE`` lock, which the index's removal waits for (and
        its own ``FOR UPDATE`` lock makes this wait, then find the row gone)."""
        values = (
            execution_id,
            _ms(_now()),
            heap_in,
            session,
            Jsonb(tags) if tags is not None else None,
            code_bytes,
            owner,
        )
        try:
            if not require_heap or heap_in is None:
                self._db.run(f"{_INSERT} VALUES (%s, 'running', %s, %s, %s, %s, %s, %s)", values)
                return
            rows = self._db.run(
                f"{_INSERT} SELECT %s, 'running', %s::timestamptz, %s, %s, %s::jsonb, %s::bigint, %s"
                " WHERE EXISTS (SELECT 1 FROM heaps WHERE key = %s FOR KEY SHARE) RETURNING id",
                (*values, heap_in),
            )
        except psycopg.errors.UniqueViolation:
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
        record; None (and nothing changes) when it is already terminal or unknown. ``duration_ms``
        defaults to the time since ``started_at``."""
        if status not in TERMINAL_STATUSES:
            raise ValueError(f"not a terminal status: {status!r}")
        now = _ms(_now())
        rows = self._db.run(
            "UPDATE executions SET status = %s, completed_at = %s, result = %s, error = %s, heap_out = %s,"
            " duration_ms = coalesce(%s::double precision,"
            " extract(epoch FROM (%s::timestamptz - started_at))::double precision * 1000.0),"
            f" js_error = %s WHERE execution_id = %s AND status = 'running' RETURNING {_COLUMNS}",
            (
                status,
                now,
                result,
                error,
                heap_out,
                duration_ms,
                now,
                None if js_error is None else Jsonb(js_error.to_dict()),
                execution_id,
            ),
        )
        return _record(rows[0]) if rows else None

    def get(self, execution_id: str) -> ExecutionRecord | None:
        rows = self._db.run(f"SELECT {_COLUMNS} FROM executions WHERE execution_id = %s", (execution_id,))
        return _record(rows[0]) if rows else None

    def list(self, limit: int = 100, status: ExecutionStatus | None = None) -> builtins.list[ExecutionRecord]:
        """Up to ``limit`` records, newest first (by ``started_at``, then by insertion order)."""
        if limit < 0:
            raise ValueError("limit must be >= 0")
        sql = f"SELECT {_COLUMNS} FROM executions"
        params: builtins.list[Any] = []
        if status is not None:
            sql += " WHERE status = %s"
            params.append(status)
        rows = self._db.run(sql + " ORDER BY started_at DESC, id DESC LIMIT %s", (*params, limit))
        return [_record(row) for row in rows]

    def list_page(
        self,
        limit: int = 100,
        *,
        status: ExecutionStatus | None = None,
        session: str | None = None,
        cursor: str | None = None,
    ) -> Page[ExecutionRecord]:
        """A page of up to ``limit`` records, newest first, of ``status`` and of ``session`` when
        given, after ``cursor`` when given. Raises :class:`~..paging.InvalidCursor`."""
        _check_limit(limit)
        where: builtins.list[str] = []
        params: builtins.list[Any] = []
        if cursor is not None:
            at, row_id = decode_cursor(_EXECUTIONS, cursor, _RECORD_POSITION)
            where.append("(started_at, id) < (%s, %s)")
            params += [_at(at), row_id]
        if session is not None and "\x00" in session:  # PostgreSQL text holds no NUL: no such session
            return Page([], None)
        if status is not None:
            where.append("status = %s")
            params.append(status)
        if session is not None:
            where.append("session = %s")
            params.append(session)
        sql = f"SELECT {_COLUMNS}, id FROM executions"
        if where:
            sql += " WHERE " + " AND ".join(where)
        rows = self._db.run(sql + " ORDER BY started_at DESC, id DESC LIMIT %s", (*params, limit + 1))
        return _record_page(_EXECUTIONS, rows, limit)

    def session_log(
        self, session: str, limit: int = 100, *, cursor: str | None = None
    ) -> Page[ExecutionRecord] | None:
        """A page of up to ``limit`` records of ``session``, oldest first, after ``cursor`` when
        given; None when no retained execution belongs to ``session``. Raises
        :class:`~..paging.InvalidCursor`."""
        _check_limit(limit)
        sql = f"SELECT {_COLUMNS}, id FROM executions WHERE session = %s"
        params: builtins.list[Any] = [session]
        if cursor is not None:
            at, row_id = decode_cursor(_SESSION_LOG, cursor, _RECORD_POSITION)
            sql += " AND (started_at, id) > (%s, %s)"
            params += [_at(at), row_id]
        if "\x00" in session:
            return None
        rows = self._db.run(sql + " ORDER BY started_at, id LIMIT %s", (*params, limit + 1))
        if not rows and not self._db.run("SELECT 1 FROM executions WHERE session = %s LIMIT 1", (session,)):
            return None
        return _record_page(_SESSION_LOG, rows, limit)

    def sessions(self, limit: int = 100, *, cursor: str | None = None) -> Page[SessionSummary]:
        """A page of up to ``limit`` sessions, latest activity first (ties by session name, code
        point order), after ``cursor`` when given. Raises :class:`~..paging.InvalidCursor`."""
        _check_limit(limit)
        where = ""
        params: builtins.list[Any] = []
        if cursor is not None:
            last_at, session = decode_cursor(_SESSIONS, cursor, _SESSION_POSITION)
            at = _at(last_at)
            # No session name holds a NUL (PostgreSQL text cannot): the names after "ab\x00..." are
            # exactly those after "ab".
            session = session.split("\x00", 1)[0]
            where = "WHERE last_at <= %s AND (last_at < %s OR session > %s)"
            params = [at, at, session]
        rows = self._db.run(_SESSIONS_SQL.format(where=where), (*params, limit + 1))
        items = [_session(row) for row in rows[:limit]]
        last = items[-1] if len(rows) > limit else None
        return Page(items, encode_cursor(_SESSIONS, [last.last_activity_at, last.session]) if last else None)

    def fail_running_on_startup(self, reason: str) -> int:
        """Marks every ``running`` execution ``failed`` with ``reason``; returns how many. With
        several nodes on one database, prefer :meth:`fail_running_of` (this fails theirs too)."""
        return self._db.run_count(
            "UPDATE executions SET status = 'failed', error = %s, completed_at = %s WHERE status = 'running'",
            (reason, _ms(_now())),
        )

    def running_owners(self) -> set[str | None]:
        rows = self._db.run("SELECT DISTINCT owner FROM executions WHERE status = 'running'")
        return {None if r[0] is None else str(r[0]) for r in rows}

    def fail_running_of(self, owners: Collection[str | None], reason: str) -> int:
        named = sorted({o for o in owners if o is not None})
        unowned = None in owners
        if not named and not unowned:
            return 0
        return self._db.run_count(
            "UPDATE executions SET status = 'failed', error = %s, completed_at = %s"
            " WHERE status = 'running' AND (owner = ANY(%s) OR (%s AND owner IS NULL))",
            (reason, _ms(_now()), named, unowned),
        )

    def heaps_used_since(self, max_age_seconds: float) -> set[str]:
        cutoff = _ms(_now() - timedelta(seconds=max_age_seconds))
        rows = self._db.run(
            "SELECT heap_in FROM executions WHERE heap_in IS NOT NULL AND (started_at >= %s OR status = 'running')"
            " UNION SELECT heap_out FROM executions WHERE heap_out IS NOT NULL AND completed_at >= %s",
            (cutoff, cutoff),
        )
        return {str(r[0]) for r in rows}

    def prunable(
        self, max_age_seconds: float | None = None, max_count: int | None = None
    ) -> builtins.list[str]:
        """Ids of terminal executions that completed more than ``max_age_seconds`` ago or that are
        not among the newest ``max_count`` terminal executions, sorted."""
        if max_count is not None and max_count < 0:
            raise ValueError("max_count must be >= 0")
        doomed: set[str] = set()
        if max_age_seconds is not None:
            cutoff = _ms(_now() - timedelta(seconds=max_age_seconds))
            rows = self._db.run(
                "SELECT execution_id FROM executions WHERE status <> 'running' AND completed_at < %s",
                (cutoff,),
            )
            doomed.update(str(row[0]) for row in rows)
        if max_count is not None:
            rows = self._db.run(
                "SELECT execution_id FROM executions WHERE status <> 'running'"
                " ORDER BY started_at DESC, id DESC OFFSET %s",
                (max_count,),
            )
            doomed.update(str(row[0]) for row in rows)
        return sorted(doomed)

    def delete(self, execution_ids: Iterable[str]) -> int:
        """Deletes the terminal executions among ``execution_ids``; returns how many."""
        ids = [i for i in builtins.list(execution_ids) if "\x00" not in i]
        deleted = 0
        for i in range(0, len(ids), _DELETE_BATCH):
            deleted += self._db.run_count(
                "DELETE FROM executions WHERE status <> 'running' AND execution_id = ANY(%s)",
                (ids[i : i + _DELETE_BATCH],),
            )
        return deleted


def _record_page(listing: str, rows: Sequence[Row], limit: int) -> Page[ExecutionRecord]:
    items = [_record(row) for row in rows[:limit]]
    next_cursor = None
    if len(rows) > limit:
        last = rows[limit - 1]
        next_cursor = encode_cursor(listing, [_iso(last[2]), last[13]])  # (started_at, id)
    return Page(items, next_cursor)


def _session(row: Row) -> SessionSummary:
    return SessionSummary(
        session=row[0],
        executions=int(row[1]),
        first_activity_at=_iso(row[2]) or "",
        last_activity_at=_iso(row[3]) or "",
        latest_heap=row[4],
    )


def _record(row: Row) -> ExecutionRecord:
    tags = row[8]
    if isinstance(tags, str):
        tags = json.loads(tags)
    js_error = row[12]
    if isinstance(js_error, str):
        js_error = json.loads(js_error)
    return ExecutionRecord(
        execution_id=row[0],
        status=row[1],
        started_at=_iso(row[2]) or "",
        completed_at=_iso(row[3]),
        result=row[4],
        error=row[5],
        heap=row[6],
        session=row[7],
        tags=tags,
        duration_ms=row[9],
        heap_in=row[10],
        code_bytes=int(row[11]),
        js_error=JsError.from_dict(js_error) if js_error is not None else None,
    )
