"""GET /api/usage: the quotas of the caller's tenant (or, for an admin, of ``?tenant=``) and what
it uses of them."""

from __future__ import annotations

import falcon

from ..contract import QueryValidator
from ..operations import Operations
from .tenancy import ops_for
from .validation import query_params

USAGE_QUERY = QueryValidator("/api/usage", "get")


class UsageResource:
    QUERY_PARAMS = USAGE_QUERY.names

    def __init__(self, ops: Operations) -> None:
        self._ops = ops

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        q = query_params(USAGE_QUERY, req)
        resp.media = ops_for(self._ops, req).usage(q["tenant"])
