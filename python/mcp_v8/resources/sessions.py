"""GET /api/sessions, GET /api/sessions/log: sessions as their retained executions tell them."""

from __future__ import annotations

import falcon

from ..contract import QueryValidator
from ..storage import ExecutionRecord, ExecutionStore, InvalidCursor, SessionSummary
from .validation import bad_request, query_params

SESSIONS_QUERY = QueryValidator("/api/sessions", "get")
LOG_QUERY = QueryValidator("/api/sessions/log", "get")


def _session(summary: SessionSummary) -> dict[str, object]:
    return {
        "session": summary.session,
        "executions": summary.executions,
        "first_activity_at": summary.first_activity_at,
        "last_activity_at": summary.last_activity_at,
        "latest_heap": summary.latest_heap,
    }


def _log_entry(record: ExecutionRecord) -> dict[str, object]:
    return {
        "execution_id": record.execution_id,
        "status": record.status,
        "heap_in": record.heap_in,
        "heap": record.heap,
        "tags": record.tags,
        "started_at": record.started_at,
        "completed_at": record.completed_at,
    }


class SessionListResource:
    QUERY_PARAMS = SESSIONS_QUERY.names

    def __init__(self, executions: ExecutionStore) -> None:
        self._executions = executions

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        query = query_params(SESSIONS_QUERY, req)
        try:
            page = self._executions.sessions(query["limit"], cursor=query["cursor"])
        except InvalidCursor as e:
            raise bad_request(str(e)) from None
        resp.media = {"sessions": [_session(s) for s in page.items], "next_cursor": page.next_cursor}


class SessionLogResource:
    QUERY_PARAMS = LOG_QUERY.names

    def __init__(self, executions: ExecutionStore) -> None:
        self._executions = executions

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        query = query_params(LOG_QUERY, req)
        session: str = query["session"]
        try:
            page = self._executions.session_log(session, query["limit"], cursor=query["cursor"])
        except InvalidCursor as e:
            raise bad_request(str(e)) from None
        if page is None:
            shown = session if len(session) <= 80 else session[:80] + "..."
            raise falcon.HTTPNotFound(
                description=f"session {shown!r} not found: no retained execution belongs to it"
            )
        resp.media = {
            "session": session,
            "executions": [_log_entry(r) for r in page.items],
            "next_cursor": page.next_cursor,
        }
