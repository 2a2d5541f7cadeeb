"""Each request acts for its principal (:mod:`mcp_v8.principal`), which the security middleware
puts in ``req.context.principal``: a resource calls the operations bound to it."""

from __future__ import annotations

import falcon

from ..operations import Operations
from ..principal import single_tenant


def ops_for(ops: Operations, req: falcon.Request) -> Operations:
    """``ops`` acting for the request's principal (the single tenant's when none was set)."""
    return ops.for_principal(req.context.get("principal") or single_tenant())
