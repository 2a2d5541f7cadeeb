"""POST /api/exec, GET /api/executions, GET /api/executions/{id}, cancel, output."""

from __future__ import annotations

from typing import Any, cast

import falcon

from ..config import Settings
from ..contract import BodyValidator, InvalidRequest, QueryValidator
from ..executions import CancelOutcome, ExecutionManager, QueueFull, ShuttingDown, SubmitRequest
from ..storage import (
    ExecutionNotFound,
    ExecutionRecord,
    ExecutionStatus,
    ExecutionStore,
    HeapNotFound,
    InvalidCursor,
    OutputLog,
)
from .validation import EXECUTION_ID, bad_request, execution_id, query_params, read_json_body

LIST_QUERY = QueryValidator("/api/executions", "get")
GET_QUERY = QueryValidator("/api/executions/{id}", "get")
OUTPUT_QUERY = QueryValidator("/api/executions/{id}/output", "get")


def _info(record: ExecutionRecord) -> dict[str, Any]:
    return {
        "execution_id": record.execution_id,
        "status": record.status,
        "started_at": record.started_at,
        "completed_at": record.completed_at,
        "result": record.result,
        "error": record.error,
        "heap": record.heap,
        "session": record.session,
        "tags": record.tags,
        "duration_ms": record.duration_ms,
    }


def _summary(record: ExecutionRecord) -> dict[str, Any]:
    return {
        "execution_id": record.execution_id,
        "status": record.status,
        "started_at": record.started_at,
        "completed_at": record.completed_at,
    }


class ExecResource:
    def __init__(self, settings: Settings, manager: ExecutionManager, executions: ExecutionStore) -> None:
        self._settings = settings
        self._manager = manager  # checks the heap exists, in one step with accepting the execution
        self._executions = executions
        # The contract's schema, with this server's bounds on top.
        self._body = BodyValidator(
            "ExecRequest",
            maxima={
                "execution_timeout_secs": settings.max_timeout_secs,
                "heap_memory_max_mb": settings.max_heap_mb,
            },
        )

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        s = self._settings
        try:
            body = self._body.validate(read_json_body(req, s.max_body_bytes))
        except InvalidRequest as e:
            raise bad_request(str(e)) from None
        code: str = body["code"]
        size = len(code.encode("utf-8"))
        if size > s.max_code_bytes:
            raise falcon.HTTPContentTooLarge(
                description=f"code is {size} bytes, the limit is {s.max_code_bytes}"
            )
        timeout = body.get("execution_timeout_secs")
        heap_mb = body.get("heap_memory_max_mb")
        heap = body.get("heap")
        tags = body.get("tags")
        session = body.get("session")
        snapshot = body.get("snapshot")

        request = SubmitRequest(
            code=code,
            heap=heap,
            heap_limit_mb=heap_mb or s.default_heap_mb,
            timeout_secs=float(timeout or s.default_timeout_secs),
            session=session,
            tags=dict(tags or {}),
            snapshot=s.snapshot_default if snapshot is None else snapshot,
        )
        try:
            new_id = self._manager.submit(request)
        except QueueFull as e:
            raise falcon.HTTPTooManyRequests(description=str(e), headers={"Retry-After": "1"}) from None
        except ShuttingDown as e:
            raise falcon.HTTPServiceUnavailable(description=str(e), headers={"Retry-After": "5"}) from None
        except HeapNotFound:
            raise falcon.HTTPNotFound(description=f"heap {heap} not found") from None
        wait_ms = body.get("wait_ms")
        if not wait_ms:
            resp.status = falcon.HTTP_202
            resp.media = {"execution_id": new_id}
            return
        # Submit and long-poll in one request: the execution as GET ?wait_ms= would answer it.
        record = self._manager.wait(new_id, wait_ms / 1000) or self._executions.get(new_id)
        if record is None:  # pruned already: only a retention of zero age could do that
            raise falcon.HTTPNotFound(description=f"execution {new_id} not found")
        resp.status = falcon.HTTP_200 if record.is_terminal else falcon.HTTP_202
        resp.media = _info(record)


class ExecutionListResource:
    QUERY_PARAMS = LIST_QUERY.names

    def __init__(self, executions: ExecutionStore) -> None:
        self._executions = executions

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        query = query_params(LIST_QUERY, req)
        try:
            page = self._executions.list_page(
                query["limit"],
                status=cast(ExecutionStatus, query["status"]),
                session=query["session"],
                cursor=query["cursor"],
            )
        except InvalidCursor as e:
            raise bad_request(str(e)) from None
        resp.media = {"executions": [_summary(r) for r in page.items], "next_cursor": page.next_cursor}


class ExecutionResource:
    QUERY_PARAMS = GET_QUERY.names

    def __init__(self, executions: ExecutionStore, manager: ExecutionManager) -> None:
        self._executions = executions
        self._manager = manager

    def on_get(self, req: falcon.Request, resp: falcon.Response, id: str) -> None:
        execution_id(id)
        wait_ms = query_params(GET_QUERY, req)["wait_ms"]
        record = self._manager.wait(id, wait_ms / 1000) if wait_ms else None
        if record is None:
            record = self._executions.get(id)
        if record is None:
            raise falcon.HTTPNotFound(description=f"execution {id} not found")
        resp.media = _info(record)


class CancelResource:
    def __init__(self, manager: ExecutionManager, executions: ExecutionStore) -> None:
        self._manager = manager
        self._executions = executions

    def on_post(self, req: falcon.Request, resp: falcon.Response, id: str) -> None:
        # The contract answers a cancel with a CancelResult only (200, or 400 with ok
        # false), so an id that cannot exist or is unknown is a 400 too, not a 404.
        outcome = self._manager.cancel(id) if EXECUTION_ID.fullmatch(id) else CancelOutcome.UNKNOWN
        if outcome is CancelOutcome.UNKNOWN:
            resp.status = falcon.HTTP_400
            resp.media = {"ok": False, "error": f"execution {id[:80]!r} not found"}
            return
        if outcome is CancelOutcome.ALREADY_FINISHED:
            record = self._executions.get(id)
            status = record.status if record else "finished"
            resp.status = falcon.HTTP_400
            resp.media = {"ok": False, "error": f"execution already finished ({status})"}
            return
        resp.media = {"ok": True, "error": None}


class OutputResource:
    QUERY_PARAMS = OUTPUT_QUERY.names

    def __init__(self, executions: ExecutionStore, output: OutputLog) -> None:
        self._executions = executions
        self._output = output

    def on_get(self, req: falcon.Request, resp: falcon.Response, id: str) -> None:
        execution_id(id)
        line_mode = req.get_param("line_offset") is not None or req.get_param("line_limit") is not None
        byte_mode = req.get_param("byte_offset") is not None or req.get_param("byte_limit") is not None
        if line_mode and byte_mode:
            raise bad_request("use either line_offset/line_limit or byte_offset/byte_limit, not both")
        query = query_params(OUTPUT_QUERY, req)
        if byte_mode:
            offset, limit = query["byte_offset"], query["byte_limit"]
        else:
            offset, limit = query["line_offset"], query["line_limit"]
        record = self._executions.get(id)
        if record is None:
            raise falcon.HTTPNotFound(description=f"execution {id} not found")
        try:
            if byte_mode:
                page = self._output.read_bytes(id, offset, limit)
            else:
                page = self._output.read_lines(id, offset, limit)
        except ExecutionNotFound:  # pruned since the record was read
            raise falcon.HTTPNotFound(description=f"execution {id} not found") from None
        resp.media = {
            "execution_id": id,
            "status": record.status,
            "data": page.data,
            "start_line": page.start_line,
            "end_line": page.end_line,
            "start_byte": page.start_byte,
            "end_byte": page.end_byte,
            "next_line_offset": page.next_line_offset,
            "next_byte_offset": page.next_byte_offset,
            "has_more": page.has_more,
            "total_lines": page.total_lines,
            "total_bytes": page.total_bytes,
        }
