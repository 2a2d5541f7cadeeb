"""GET /api/tools and GET /api/tools/declarations: the tool servers of ``--tools-config``."""

from __future__ import annotations

import falcon

from ..operations import Operations
from ..tools.catalogue import declarations
from .tenancy import ops_for


class ToolsResource:
    """Every configured tool server with its state (connecting, ready, down), its last error
    and the tools it exposes: schemas, annotations and whether a call needs approval."""

    def __init__(self, ops: Operations) -> None:
        self._ops = ops

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        resp.media = {"servers": [s.as_json() for s in ops_for(self._ops, req).tool_servers()]}


class ToolDeclarationsResource:
    """The TypeScript declarations of the ``tools`` object scripts see."""

    def __init__(self, ops: Operations) -> None:
        self._ops = ops

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        resp.content_type = "text/plain; charset=utf-8"
        resp.text = declarations(ops_for(self._ops, req).tool_servers())
