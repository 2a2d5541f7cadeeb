"""GET /api/sessions, GET /api/sessions/log: sessions as their retained executions tell them."""

from __future__ import annotations

import falcon

from ..contract import QueryValidator
from ..operations import Operations
from .validation import query_params

SESSIONS_QUERY = QueryValidator("/api/sessions", "get")
LOG_QUERY = QueryValidator("/api/sessions/log", "get")


class SessionListResource:
    QUERY_PARAMS = SESSIONS_QUERY.names

    def __init__(self, ops: Operations) -> None:
        self._ops = ops

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        q = query_params(SESSIONS_QUERY, req)
        resp.media = self._ops.sessions(q["limit"], cursor=q["cursor"])


class SessionLogResource:
    QUERY_PARAMS = LOG_QUERY.names

    def __init__(self, ops: Operations) -> None:
        self._ops = ops

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        q = query_params(LOG_QUERY, req)
        resp.media = self._ops.session_log(q["session"], q["limit"], cursor=q["cursor"])
