"""GET /api/sessions, GET /api/sessions/log: sessions as their retained executions tell them;
POST and DELETE /api/sessions/snapshot: snapshot or end a live session."""

from __future__ import annotations

import falcon

from ..contract import QueryValidator
from ..operations import Operations
from .tenancy import ops_for
from .validation import bad_request, query_params

SESSIONS_QUERY = QueryValidator("/api/sessions", "get")
LOG_QUERY = QueryValidator("/api/sessions/log", "get")
SNAPSHOT_QUERY = QueryValidator("/api/sessions/snapshot", "post")
END_QUERY = QueryValidator("/api/sessions/snapshot", "delete")


class SessionListResource:
    QUERY_PARAMS = SESSIONS_QUERY.names

    def __init__(self, ops: Operations) -> None:
        self._ops = ops

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        q = query_params(SESSIONS_QUERY, req)
        resp.media = ops_for(self._ops, req).sessions(q["limit"], cursor=q["cursor"])


class SessionLogResource:
    QUERY_PARAMS = LOG_QUERY.names

    def __init__(self, ops: Operations) -> None:
        self._ops = ops

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        q = query_params(LOG_QUERY, req)
        resp.media = ops_for(self._ops, req).session_log(q["session"], q["limit"], cursor=q["cursor"])


class LiveSessionResource:
    QUERY_PARAMS = SNAPSHOT_QUERY.names | END_QUERY.names

    def __init__(self, ops: Operations) -> None:
        self._ops = ops

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        if "snapshot" in req.params:  # DELETE's alone
            raise bad_request("unknown query parameter(s): 'snapshot'")
        q = query_params(SNAPSHOT_QUERY, req)
        resp.media = ops_for(self._ops, req).snapshot_session(q["session"])

    def on_delete(self, req: falcon.Request, resp: falcon.Response) -> None:
        q = query_params(END_QUERY, req)
        snapshot = q.get("snapshot")
        resp.media = ops_for(self._ops, req).end_session(q["session"], snapshot is not False)
