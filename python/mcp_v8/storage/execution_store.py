"""The execution store over a database connector: :class:`SQLExecutionStore`, the ``executions``
table of the registry database, SQLite (:class:`SQLiteExecutionStore`) or PostgreSQL
(:class:`~.postgres.stores.PostgresExecutionStore`), keeping the contract of
:class:`~.executions.ExecutionStore`.

Every method is one statement, except the listings that may need a second look (an empty session
log: is there such a session?) and a batched delete. :meth:`~SQLExecutionStore.finish` is one
``UPDATE ... WHERE execution_id = :execution_id AND status = 'running' RETURNING ...`` that also
works out the duration when none is given: the first terminal transition wins across threads,
processes and nodes (see the contract). Timestamps come from :func:`_now` (the node's clock,
truncated to milliseconds), so they compare in SQL as the ISO strings the records and cursors
carry. PostgreSQL's text holds no U+0000: there, a name holding one finds nothing.
"""

from __future__ import annotations

import builtins
import json
import os
from collections.abc import Collection, Iterable, Sequence
from datetime import datetime, timedelta, timezone
from typing import Any

from ..js_error import JsError
from ..principal import DEFAULT_TENANT
from ..quotas import TenantQuotas
from . import tenant_usage
from .errors import DuplicateExecution, DuplicateKey, HeapNotFound, InvalidCursor
from .executions import (
    TERMINAL_STATUSES,
    ExecutionRecord,
    ExecutionStatus,
    PendingToolCall,
    SessionSummary,
    TerminalStatus,
)
from .paging import Page, decode_cursor, encode_cursor, is_row_id, is_text, is_timestamp
from .schema import opened
from .sql import Closing, Connector, Json, Row
from .sqlite import SQLiteDatabase
from .tenant_usage import TenantUsage

__all__ = ["NEW_RECORD", "SQLExecutionStore", "SQLiteExecutionStore", "new_record_params"]

_DELETE_BATCH = 500
_COLUMN_NAMES = (
    "execution_id, status, started_at, completed_at, result, error, heap_out, session, tags, "
    "duration_ms, heap_in, code_bytes, js_error, pending_tool_calls, waiting_heap, tool_calls_made, "
    "resume_spec, waiting_since, approval_deadline, trace_id, tenant"
)
_COLUMNS = _COLUMN_NAMES
_ID_COLUMN = len(_COLUMN_NAMES.split(","))  # where a listing's row has its ``id``, after the record
# A new record, as an INSERT's columns and the values of a SELECT (see new_record_params): the
# queue of several nodes records one in the statement that queues it, with these same words.
NEW_RECORD = (
    "INSERT INTO executions (execution_id, status, started_at, heap_in, session, tags, code_bytes, owner, "
    "trace_id, tenant)",
    "SELECT :execution_id, 'running', :now, :heap_in, :session, {json:tags}, :code_bytes, :owner, :trace_id,"
    " :tenant",
)
_ENDED = "status NOT IN ('running', 'waiting')"  # terminal: what retention may delete
# The heap resumed is one of the tenant's (its ownership row, which a removal locks).
_HEAP_HELD = "EXISTS (SELECT 1 FROM heap_owners WHERE key = :heap_in AND tenant = :tenant{for_key_share})"
_FAIL_RUNNING = (
    "UPDATE executions SET status = 'failed', error = :reason, completed_at = :now WHERE status = 'running'"
)
# Paged listings: each name is a cursor's ``list``, and its position is the sort key of an item.
_EXECUTIONS, _SESSION_LOG, _SESSIONS = "executions", "session-log", "sessions"
_RECORD_POSITION = (is_timestamp, is_row_id)  # (started_at, id)
_SESSION_POSITION = (is_timestamp, is_text, is_text)  # (last activity, session, tenant)
_SESSION_POSITION_V1 = (is_timestamp, is_text)  # a cursor from before tenants: (last activity, session)
_AFTER_EVERY_TENANT = "~"  # sorts after every tenant's name (principal.TENANT_PATTERN), in code point order
# Sessions by latest activity. The aggregate walks the index by session, so executions without a
# session cost it nothing; only the sessions of the page look up their latest heap, walking their
# entries of that index backwards from the newest until one produced a heap.
SESSIONS_SQL = """
WITH activity AS (
    SELECT session, tenant, count(*) AS executions, min(started_at) AS first_at,
           {greatest}(max(started_at), coalesce(max(completed_at), max(started_at))) AS last_at
    FROM executions WHERE session IS NOT NULL{tenant} GROUP BY tenant, session
), page AS MATERIALIZED (
    SELECT session, tenant, executions, first_at, last_at FROM activity WHERE {after}
    ORDER BY last_at DESC, session, tenant LIMIT :limit
)
SELECT session, executions, first_at, last_at,
       (SELECT heap_out FROM executions AS e
        WHERE e.tenant = page.tenant AND e.session = page.session AND e.heap_out IS NOT NULL
        ORDER BY e.started_at DESC, e.id DESC LIMIT 1),
       tenant
FROM page ORDER BY last_at DESC, session, tenant
"""
# A tenant's sessions walk its index (tenant, session, started_at, id); every tenant's, the one by session.
_SESSIONS_OF = " AND tenant = :tenant"
_SESSIONS_AFTER = (
    "last_at <= :at AND (last_at < :at OR session > :after OR (session = :after AND tenant > :after_tenant))"
)


def _now() -> datetime:
    """The time records are stamped with (tests pin it)."""
    return datetime.now(timezone.utc)


def _ms(dt: datetime) -> datetime:
    """``dt`` in UTC, truncated to milliseconds: what every store keeps."""
    dt = dt.astimezone(timezone.utc)
    return dt.replace(microsecond=dt.microsecond - dt.microsecond % 1000)


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


def new_record_params(
    execution_id: str,
    *,
    session: str | None,
    tags: dict[str, str] | None,
    heap_in: str | None,
    code_bytes: int,
    owner: str | None,
    trace_id: str | None = None,
    tenant: str = DEFAULT_TENANT,
) -> dict[str, Any]:
    """The parameters of :data:`NEW_RECORD`: ``running``, started now."""
    return {
        "execution_id": execution_id,
        "now": _ms(_now()),
        "heap_in": heap_in,
        "session": session,
        "tags": None if tags is None else Json(tags),
        "code_bytes": code_bytes,
        "owner": owner,
        "trace_id": trace_id,
        "tenant": tenant,
    }


class SQLExecutionStore(Closing):
    """An :class:`~.executions.ExecutionStore` in the ``executions`` table of ``database``, a
    :class:`~.sql.Connector` shared with the other stores (and closed by whoever opened it,
    unless ``owned``)."""

    def __init__(self, database: Connector, *, owned: bool = False) -> None:
        self._db = database
        self._owned = owned
        self._nul = not database.dialect.holds_nul  # text that holds U+0000 cannot be stored

    def close(self) -> None:
        if self._owned:
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
        trace_id: str | None = None,
        tenant: str = DEFAULT_TENANT,
        quotas: TenantQuotas | None = None,
    ) -> None:
        """Records a new execution of ``tenant`` as ``running``, started now, run by the process ``owner``.
        With ``quotas``, only when the tenant's record passes them, checked in the transaction
        that inserts it (:func:`.tenant_usage.admit`; else :class:`~mcp_v8.quotas.QuotaReached`).
        Raises :class:`~.errors.DuplicateExecution`; with ``require_heap``,
        :class:`~.errors.HeapNotFound` unless the heap index holds ``heap_in``, in the same
        statement: SQLite runs it under the database's write lock, which the index's removal
        holds across its check; PostgreSQL takes the index row's ``FOR KEY SHARE`` lock, which
        the removal's ``FOR UPDATE`` waits for (and makes this wait, then find the row gone)."""
        params = new_record_params(
            execution_id,
            session=session,
            tags=tags,
            heap_in=heap_in,
            code_bytes=code_bytes,
            owner=owner,
            trace_id=trace_id,
            tenant=tenant,
        )
        insert, values = NEW_RECORD
        held = require_heap and heap_in is not None
        statement = f"{insert} {values} WHERE {_HEAP_HELD} RETURNING id" if held else f"{insert} {values}"
        try:
            if quotas is not None and quotas.limits_admission:
                with self._db.transaction() as tx:
                    tenant_usage.admit(tx, self._db.dialect.name, tenant, quotas, params["now"])
                    rows = tx.run(statement, params)
            else:
                rows = self._db.run(statement, params)
        except DuplicateKey:
            raise DuplicateExecution(execution_id) from None
        if held and not rows:
            raise HeapNotFound(heap_in)

    def tenant_usage(self, tenant: str) -> TenantUsage:
        """What ``tenant`` uses now of the quotas counted from the records (the running, those
        started this minute) and of the heaps it owns (their bytes, from ``heap_owners``)."""
        with self._db.session() as session:
            return tenant_usage.read(session, tenant, _ms(_now()))

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
        waiting: bool = False,
    ) -> ExecutionRecord | None:
        """Records the first terminal transition of a running execution (or, with ``waiting``, of
        a waiting one too) and returns its terminal
        record (read in the same statement, so a caller can answer from it without reading again);
        returns None (and changes nothing) when it is already terminal or unknown. ``duration_ms``
        defaults to the time since ``started_at``; ``js_error`` is kept as a JSON object."""
        if status not in TERMINAL_STATUSES:
            raise ValueError(f"not a terminal status: {status!r}")
        which = "status IN ('running', 'waiting')" if waiting else "status = 'running'"
        rows = self._db.run(
            "UPDATE executions SET status = :status, completed_at = :now, result = :result, error = :error,"
            " heap_out = :heap_out, duration_ms = coalesce(:duration_ms, {ms_since:started_at}),"
            " js_error = {json:js_error}"
            f" WHERE execution_id = :execution_id AND {which} RETURNING {_COLUMNS}",
            {
                "status": status,
                "now": _ms(_now()),
                "result": result,
                "error": error,
                "heap_out": heap_out,
                "duration_ms": duration_ms,
                "js_error": None if js_error is None else Json(js_error.to_dict()),
                "execution_id": execution_id,
            },
        )
        return _record(rows[0]) if rows else None

    def pause(
        self,
        execution_id: str,
        *,
        pending: Iterable[PendingToolCall],
        heap: str,
        tool_calls_made: int,
        resume_spec: dict[str, Any],
        approval_timeout_secs: float,
        duration_ms: float | None = None,
    ) -> ExecutionRecord | None:
        """``running`` → ``waiting`` in one conditional ``UPDATE`` (see the contract)."""
        now = _ms(_now())
        rows = self._db.run(
            "UPDATE executions SET status = 'waiting', pending_tool_calls = {json:pending},"
            " waiting_heap = :heap, tool_calls_made = :made, resume_spec = {json:spec},"
            " waiting_since = :now, approval_deadline = :deadline, duration_ms = :duration_ms"
            f" WHERE execution_id = :execution_id AND status = 'running' RETURNING {_COLUMNS}",
            {
                "pending": Json([c.to_dict() for c in pending]),
                "heap": heap,
                "made": tool_calls_made,
                "spec": Json(resume_spec),
                "now": now,
                "deadline": _ms(now + timedelta(seconds=approval_timeout_secs)),
                "duration_ms": duration_ms,
                "execution_id": execution_id,
            },
        )
        return _record(rows[0]) if rows else None

    def resume(self, execution_id: str, *, owner: str | None) -> ExecutionRecord | None:
        """``waiting`` → ``running`` in one conditional ``UPDATE``: of two deciders, one wins."""
        rows = self._db.run(
            "UPDATE executions SET status = 'running', owner = :owner"
            f" WHERE execution_id = :execution_id AND status = 'waiting' RETURNING {_COLUMNS}",
            {"owner": owner, "execution_id": execution_id},
        )
        return _record(rows[0]) if rows else None

    def expire_waiting(self, reason: str) -> builtins.list[ExecutionRecord]:
        """``waiting`` → ``failed`` for those past their approval deadline, in one ``UPDATE``."""
        rows = self._db.run(
            "UPDATE executions SET status = 'failed', error = :reason, completed_at = :now,"
            " duration_ms = coalesce(duration_ms, {ms_since:started_at})"
            f" WHERE status = 'waiting' AND approval_deadline <= :now RETURNING {_COLUMNS}",
            {"reason": reason, "now": _ms(_now())},
        )
        return [_record(row) for row in rows]

    def get(self, execution_id: str) -> ExecutionRecord | None:
        """The record of ``execution_id``, or None."""
        rows = self._db.run(
            f"SELECT {_COLUMNS} FROM executions WHERE execution_id = :execution_id",
            {"execution_id": execution_id},
        )
        return _record(rows[0]) if rows else None

    def list(self, limit: int = 100, status: ExecutionStatus | None = None) -> builtins.list[ExecutionRecord]:
        """Up to ``limit`` records, newest first (by ``started_at``, then by insertion order)."""
        if limit < 0:
            raise ValueError("limit must be >= 0")
        where = "" if status is None else " WHERE status = :status"
        rows = self._db.run(
            f"SELECT {_COLUMNS} FROM executions{where} ORDER BY started_at DESC, id DESC LIMIT :limit",
            {"status": status, "limit": limit},
        )
        return [_record(row) for row in rows]

    def list_page(
        self,
        limit: int = 100,
        *,
        status: ExecutionStatus | None = None,
        session: str | None = None,
        cursor: str | None = None,
        tenant: str | None = None,
    ) -> Page[ExecutionRecord]:
        """A page of up to ``limit`` records, newest first (by ``started_at``, then by insertion
        order), of ``status``, of ``session`` and of ``tenant`` when given, after ``cursor`` when
        given. Raises :class:`~.errors.InvalidCursor`. A tenant's listing walks its index
        (``tenant, started_at, id``), so a cursor of another listing yields its rows only."""
        _check_limit(limit)
        where: builtins.list[str] = []
        params: dict[str, Any] = {"status": status, "session": session, "limit": limit + 1, "tenant": tenant}
        if tenant is not None:
            where.append("tenant = :tenant")
        if cursor is not None:
            at, params["row_id"] = decode_cursor(_EXECUTIONS, cursor, _RECORD_POSITION)
            params["at"] = _at(at)
            where.append("started_at <= :at AND (started_at < :at OR id < :row_id)")
        if session is not None and self._nul and "\x00" in session:
            return Page([], None)  # no such session
        if status is not None:
            where.append("status = :status")
        if session is not None:
            where.append("session = :session")
        sql = f"SELECT {_COLUMNS}, id FROM executions"
        if where:
            sql += " WHERE " + " AND ".join(where)
        rows = self._db.run(sql + " ORDER BY started_at DESC, id DESC LIMIT :limit", params)
        return _record_page(_EXECUTIONS, rows, limit)

    def session_log(
        self, session: str, limit: int = 100, *, cursor: str | None = None, tenant: str | None = None
    ) -> Page[ExecutionRecord] | None:
        """A page of up to ``limit`` records of ``session`` (of ``tenant`` when given), oldest first
        (by ``started_at``, then by insertion order), after ``cursor`` when given; None when no
        retained execution belongs to it. Raises :class:`~.errors.InvalidCursor`."""
        _check_limit(limit)
        of = "session = :session" if tenant is None else "tenant = :tenant AND session = :session"
        sql = f"SELECT {_COLUMNS}, id FROM executions WHERE {of}"
        params: dict[str, Any] = {"session": session, "limit": limit + 1, "tenant": tenant}
        if cursor is not None:
            at, params["row_id"] = decode_cursor(_SESSION_LOG, cursor, _RECORD_POSITION)
            params["at"] = _at(at)
            sql += " AND started_at >= :at AND (started_at > :at OR id > :row_id)"
        if self._nul and "\x00" in session:
            return None
        rows = self._db.run(sql + " ORDER BY started_at, id LIMIT :limit", params)
        if not rows and not self._db.run(
            f"SELECT 1 FROM executions WHERE {of} LIMIT 1", {"session": session, "tenant": tenant}
        ):
            return None
        return _record_page(_SESSION_LOG, rows, limit)

    def sessions(
        self, limit: int = 100, *, cursor: str | None = None, tenant: str | None = None
    ) -> Page[SessionSummary]:
        """A page of up to ``limit`` sessions (of ``tenant`` when given, else of every tenant: each
        (tenant, session) is one), latest activity first (ties by session name, code point order,
        then tenant), after ``cursor`` when given. Raises :class:`~.errors.InvalidCursor`.

        Every page aggregates the executions of every session (the order is by an aggregate, so no
        index can hand it over sorted): linear in the retained executions that have a session
        (of the tenant, walking its index, when one is given)."""
        _check_limit(limit)
        after = "true"
        params: dict[str, Any] = {"limit": limit + 1, "tenant": tenant}
        if cursor is not None:
            try:
                last_at, session, after_tenant = decode_cursor(_SESSIONS, cursor, _SESSION_POSITION)
            except InvalidCursor:  # a cursor of a release before tenants: after every tenant's at its place
                last_at, session = decode_cursor(_SESSIONS, cursor, _SESSION_POSITION_V1)
                after_tenant = _AFTER_EVERY_TENANT
            if self._nul:  # no name holds U+0000: those after "ab\x00..." are those after "ab"
                session = session.split("\x00", 1)[0]
            after, params["at"], params["after"] = _SESSIONS_AFTER, _at(last_at), session
            params["after_tenant"] = after_tenant
        sql = SESSIONS_SQL.replace("{after}", after).replace(
            "{tenant}", "" if tenant is None else _SESSIONS_OF
        )
        rows = self._db.run(sql, params)
        items = [_session(row) for row in rows[:limit]]
        last = items[-1] if len(rows) > limit else None
        return Page(
            items,
            encode_cursor(_SESSIONS, [last.last_activity_at, last.session, last.tenant]) if last else None,
        )

    def fail_running_on_startup(self, reason: str) -> int:
        """Marks every ``running`` execution ``failed`` with ``reason`` (after a restart nothing can
        still be running them); returns how many. Call before accepting requests. With several
        nodes on one database, use :meth:`fail_running_of` (this fails theirs too)."""
        return self._db.count(_FAIL_RUNNING, {"reason": reason, "now": _ms(_now())})

    def running_owners(self) -> set[str | None]:
        rows = self._db.run("SELECT DISTINCT owner FROM executions WHERE status = 'running'")
        return {None if r[0] is None else str(r[0]) for r in rows}

    def fail_running_of(self, owners: Collection[str | None], reason: str) -> int:
        named = sorted({o for o in owners if o is not None})
        unowned = None in owners
        if not named and not unowned:
            return 0
        return self._db.count(
            f"{_FAIL_RUNNING} AND (owner {{any:owners}} OR (:unowned AND owner IS NULL))",
            {"reason": reason, "now": _ms(_now()), "owners": named, "unowned": unowned},
        )

    def heaps_used_since(self, max_age_seconds: float) -> set[str]:
        rows = self._db.run(
            "SELECT heap_in FROM executions WHERE heap_in IS NOT NULL AND (started_at >= :cutoff OR status = 'running')"
            " UNION SELECT heap_out FROM executions WHERE heap_out IS NOT NULL AND completed_at >= :cutoff"
            " UNION SELECT waiting_heap FROM executions WHERE waiting_heap IS NOT NULL"
            " AND status IN ('running', 'waiting')",
            {"cutoff": _ms(_now() - timedelta(seconds=max_age_seconds))},
        )
        return {str(r[0]) for r in rows}

    def prunable(
        self, max_age_seconds: float | None = None, max_count: int | None = None
    ) -> builtins.list[str]:
        """Ids of terminal executions that completed more than ``max_age_seconds`` ago or that are
        not among the newest ``max_count`` terminal executions (running and waiting ones do not
        count), sorted."""
        if max_count is not None and max_count < 0:
            raise ValueError("max_count must be >= 0")
        doomed: set[str] = set()
        with self._db.session() as session:
            if max_age_seconds is not None:
                rows = session.run(
                    f"SELECT execution_id FROM executions WHERE {_ENDED} AND completed_at < :cutoff",
                    {"cutoff": _ms(_now() - timedelta(seconds=max_age_seconds))},
                )
                doomed.update(str(row[0]) for row in rows)
            if max_count is not None:
                rows = session.run(
                    f"SELECT execution_id FROM executions WHERE {_ENDED}"
                    " ORDER BY started_at DESC, id DESC LIMIT {all} OFFSET :offset",
                    {"offset": max_count},
                )
                doomed.update(str(row[0]) for row in rows)
        return sorted(doomed)

    def delete(self, execution_ids: Iterable[str]) -> int:
        """Deletes the terminal executions among ``execution_ids``; returns how many."""
        ids = [i for i in execution_ids if not (self._nul and "\x00" in i)]
        deleted = 0
        for i in range(0, len(ids), _DELETE_BATCH):
            deleted += self._db.count(
                f"DELETE FROM executions WHERE {_ENDED} AND execution_id {{any:ids}}",
                {"ids": ids[i : i + _DELETE_BATCH]},
            )
        return deleted


class SQLiteExecutionStore(SQLExecutionStore):
    """The execution store in the SQLite database ``database``, or in that of the data directory
    ``database`` names (which the store then opens and closes itself)."""

    def __init__(self, database: SQLiteDatabase | str | os.PathLike[str]) -> None:
        db, owned = opened(database)
        super().__init__(db, owned=owned)


def _record_page(listing: str, rows: Sequence[Row], limit: int) -> Page[ExecutionRecord]:
    """The records of ``rows`` (columns ``_COLUMNS`` then ``id``, one more than ``limit`` when a next
    page exists) as a page of ``listing``."""
    items = [_record(row) for row in rows[:limit]]
    next_cursor = None
    if len(rows) > limit:
        last = rows[limit - 1]
        next_cursor = encode_cursor(listing, [last[2], last[_ID_COLUMN]])  # (started_at, id)
    return Page(items, next_cursor)


def _session(row: Row) -> SessionSummary:
    return SessionSummary(
        session=row[0],
        executions=int(row[1]),
        first_activity_at=row[2],
        last_activity_at=row[3],
        latest_heap=row[4],
        tenant=row[5],
    )


def _record(row: Row) -> ExecutionRecord:
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
        code_bytes=int(row[11]),
        js_error=JsError.from_dict(json.loads(row[12])) if row[12] is not None else None,
        pending_tool_calls=None
        if row[13] is None
        else tuple(PendingToolCall(**c) for c in json.loads(row[13])),
        waiting_heap=row[14],
        tool_calls_made=None if row[15] is None else int(row[15]),
        resume_spec=None if row[16] is None else json.loads(row[16]),
        waiting_since=row[17],
        approval_deadline=row[18],
        trace_id=row[19],
        tenant=row[20],
    )
