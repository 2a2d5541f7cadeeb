"""POST /api/exec, GET /api/executions, GET /api/executions/{id}, cancel, output, tool calls: the
query strings and bodies of the contract turned into calls of :class:`Operations`."""

from __future__ import annotations

import falcon

from ..contract import BodyValidator, InvalidRequest, QueryValidator
from ..operations import Operations
from .tenancy import ops_for
from .validation import bad_request, query_params, read_json_body

LIST_QUERY = QueryValidator("/api/executions", "get")
GET_QUERY = QueryValidator("/api/executions/{id}", "get")
OUTPUT_QUERY = QueryValidator("/api/executions/{id}/output", "get")


def exec_validator(ops: Operations) -> BodyValidator:
    """The contract's ExecRequest, with this server's bounds on top."""
    s = ops.settings
    return BodyValidator(
        "ExecRequest",
        maxima={
            "execution_timeout_secs": s.max_timeout_secs,
            "heap_memory_max_mb": s.max_heap_mb,
            "max_tool_calls": s.max_tool_calls_ceiling,
            "wall_timeout_secs": s.max_wall_timeout_secs,
        },
    )


class ExecResource:
    def __init__(self, ops: Operations) -> None:
        self._ops = ops
        self._body = exec_validator(ops)

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        try:
            body = self._body.validate(read_json_body(req, self._ops.settings.max_body_bytes))
        except InvalidRequest as e:
            raise bad_request(str(e)) from None
        new_id = ops_for(self._ops, req).submit(body, req.get_header("traceparent"))
        wait_ms = body.get("wait_ms")
        if not wait_ms:
            resp.status = falcon.HTTP_202
            resp.media = {"execution_id": new_id}
            return
        # Submit and long-poll in one request: the execution as GET ?wait_ms= would answer it.
        info = ops_for(self._ops, req).get(new_id, wait_ms)
        resp.status = falcon.HTTP_202 if info["status"] == "running" else falcon.HTTP_200
        resp.media = info


class ExecutionListResource:
    QUERY_PARAMS = LIST_QUERY.names

    def __init__(self, ops: Operations) -> None:
        self._ops = ops

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        q = query_params(LIST_QUERY, req)
        resp.media = ops_for(self._ops, req).list_executions(
            q["limit"], status=q["status"], session=q["session"], cursor=q["cursor"]
        )


class ExecutionResource:
    QUERY_PARAMS = GET_QUERY.names

    def __init__(self, ops: Operations) -> None:
        self._ops = ops

    def on_get(self, req: falcon.Request, resp: falcon.Response, id: str) -> None:
        resp.media = ops_for(self._ops, req).get(id, query_params(GET_QUERY, req)["wait_ms"])


class CancelResource:
    def __init__(self, ops: Operations) -> None:
        self._ops = ops

    def on_post(self, req: falcon.Request, resp: falcon.Response, id: str) -> None:
        # The contract answers a cancel with a CancelResult only (200, or 400 with ok
        # false), so an id that cannot exist or is unknown is a 400 too, not a 404.
        result = ops_for(self._ops, req).cancel(id)
        if not result["ok"]:
            resp.status = falcon.HTTP_400
        resp.media = result


class OutputResource:
    QUERY_PARAMS = OUTPUT_QUERY.names

    def __init__(self, ops: Operations) -> None:
        self._ops = ops

    def on_get(self, req: falcon.Request, resp: falcon.Response, id: str) -> None:
        q = query_params(OUTPUT_QUERY, req)
        given = {name: q[name] for name in OUTPUT_QUERY.names if req.get_param(name) is not None}
        resp.media = ops_for(self._ops, req).output(id, **given)


class ToolCallsResource:
    def __init__(self, ops: Operations) -> None:
        self._ops = ops

    def on_get(self, req: falcon.Request, resp: falcon.Response, id: str) -> None:
        resp.media = ops_for(self._ops, req).tool_calls(id)


class ApproveResource:
    """POST /api/executions/{id}/approve: only the approver's credential reaches it (the
    security middleware checks it, on this route only)."""

    def __init__(self, ops: Operations) -> None:
        self._ops = ops
        self._body = BodyValidator("ApprovalRequest")

    def on_post(self, req: falcon.Request, resp: falcon.Response, id: str) -> None:
        try:
            body = self._body.validate(read_json_body(req, self._ops.settings.max_body_bytes))
        except InvalidRequest as e:
            raise bad_request(str(e)) from None
        resp.status = falcon.HTTP_202
        resp.media = ops_for(self._ops, req).approve(id, body)
