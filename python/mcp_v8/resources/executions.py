"""POST /api/exec, GET /api/executions, GET /api/executions/{id}, cancel, output."""

from __future__ import annotations

from typing import Any, cast

import falcon

from ..config import Settings
from ..executions import CancelOutcome, ExecutionManager, QueueFull, ShuttingDown, SubmitRequest
from ..storage import ExecutionRecord, ExecutionStatus, HeapStore, Registry
from .validation import HEAP_KEY, bad_request, execution_id, optional_int, query_int, read_json_body

EXEC_FIELDS = frozenset({"code", "execution_timeout_secs", "heap", "heap_memory_max_mb", "session", "tags"})
STATUSES = ("running", "completed", "failed", "cancelled", "timed_out")
MAX_TAGS = 64
MAX_TAG_CHARS = 256
MAX_SESSION_CHARS = 256
MAX_WAIT_MS = 30000


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
    def __init__(self, settings: Settings, manager: ExecutionManager, heaps: HeapStore) -> None:
        self._settings = settings
        self._manager = manager
        self._heaps = heaps

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        body = read_json_body(req, self._settings.max_body_bytes)
        if not isinstance(body, dict):
            raise bad_request("the request body must be a JSON object")
        unknown = sorted(set(body) - EXEC_FIELDS)
        if unknown:
            raise bad_request(f"unknown field(s): {', '.join(unknown)}")
        s = self._settings

        code = body.get("code")
        if not isinstance(code, str) or not code.strip():
            raise bad_request("code must be a non-empty string")
        size = len(code.encode("utf-8", "surrogatepass"))
        if size > s.max_code_bytes:
            raise falcon.HTTPContentTooLarge(
                description=f"code is {size} bytes, the limit is {s.max_code_bytes}"
            )

        timeout = optional_int(body, "execution_timeout_secs", 1, s.max_timeout_secs)
        heap_mb = optional_int(body, "heap_memory_max_mb", 8, s.max_heap_mb)

        heap = body.get("heap")
        if heap is not None:
            if not isinstance(heap, str) or not HEAP_KEY.fullmatch(heap):
                raise bad_request(
                    "heap must be a 64-character lowercase hex key returned by an earlier execution"
                )
            if not self._heaps.exists(heap):
                raise falcon.HTTPNotFound(description=f"heap {heap} not found")

        tags = body.get("tags")
        if tags is not None:
            if not isinstance(tags, dict) or not all(
                isinstance(k, str) and isinstance(v, str) for k, v in tags.items()
            ):
                raise bad_request("tags must be an object whose values are strings")
            if len(tags) > MAX_TAGS or any(
                len(k) > MAX_TAG_CHARS or len(v) > MAX_TAG_CHARS for k, v in tags.items()
            ):
                raise bad_request(f"tags: at most {MAX_TAGS} entries of at most {MAX_TAG_CHARS} characters")

        session = body.get("session")
        if session is not None and (not isinstance(session, str) or len(session) > MAX_SESSION_CHARS):
            raise bad_request(f"session must be a string of at most {MAX_SESSION_CHARS} characters")

        request = SubmitRequest(
            code=code,
            heap=heap,
            heap_limit_mb=heap_mb or s.default_heap_mb,
            timeout_secs=float(timeout or s.default_timeout_secs),
            session=session,
            tags=dict(tags or {}),
        )
        try:
            new_id = self._manager.submit(request)
        except QueueFull as e:
            raise falcon.HTTPTooManyRequests(description=str(e), headers={"Retry-After": "1"}) from None
        except ShuttingDown as e:
            raise falcon.HTTPServiceUnavailable(description=str(e), headers={"Retry-After": "5"}) from None
        resp.status = falcon.HTTP_202
        resp.media = {"execution_id": new_id}


class ExecutionListResource:
    QUERY_PARAMS = frozenset({"limit", "status"})

    def __init__(self, registry: Registry) -> None:
        self._registry = registry

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        limit = query_int(req, "limit", 1, 1000, 100)
        status = req.get_param("status")
        if status is not None and status not in STATUSES:
            raise bad_request(f"status must be one of {', '.join(STATUSES)}")
        records = self._registry.list(limit=limit or 100, status=cast(ExecutionStatus, status))
        resp.media = {"executions": [_summary(r) for r in records]}


class ExecutionResource:
    QUERY_PARAMS = frozenset({"wait_ms"})

    def __init__(self, registry: Registry, manager: ExecutionManager) -> None:
        self._registry = registry
        self._manager = manager

    def on_get(self, req: falcon.Request, resp: falcon.Response, id: str) -> None:
        execution_id(id)
        wait_ms = query_int(req, "wait_ms", 0, MAX_WAIT_MS, 0)
        if wait_ms:
            self._manager.wait(id, wait_ms / 1000)
        record = self._registry.get(id)
        if record is None:
            raise falcon.HTTPNotFound(description=f"execution {id} not found")
        resp.media = _info(record)


class CancelResource:
    def __init__(self, manager: ExecutionManager, registry: Registry) -> None:
        self._manager = manager
        self._registry = registry

    def on_post(self, req: falcon.Request, resp: falcon.Response, id: str) -> None:
        execution_id(id)
        outcome = self._manager.cancel(id)
        if outcome is CancelOutcome.UNKNOWN:
            raise falcon.HTTPNotFound(description=f"execution {id} not found")
        if outcome is CancelOutcome.ALREADY_FINISHED:
            record = self._registry.get(id)
            status = record.status if record else "finished"
            resp.status = falcon.HTTP_400
            resp.media = {"ok": False, "error": f"execution already finished ({status})"}
            return
        resp.media = {"ok": True, "error": None}


class OutputResource:
    QUERY_PARAMS = frozenset({"line_offset", "line_limit", "byte_offset", "byte_limit"})

    def __init__(self, registry: Registry) -> None:
        self._registry = registry

    def on_get(self, req: falcon.Request, resp: falcon.Response, id: str) -> None:
        execution_id(id)
        line_mode = req.get_param("line_offset") is not None or req.get_param("line_limit") is not None
        byte_mode = req.get_param("byte_offset") is not None or req.get_param("byte_limit") is not None
        if line_mode and byte_mode:
            raise bad_request("use either line_offset/line_limit or byte_offset/byte_limit, not both")
        big = 2**62
        if byte_mode:
            offset = query_int(req, "byte_offset", 0, big, 0) or 0
            limit = query_int(req, "byte_limit", 1, 1 << 20, 65536) or 65536
        else:
            offset = query_int(req, "line_offset", 0, big, 0) or 0
            limit = query_int(req, "line_limit", 1, 10000, 1000) or 1000
        record = self._registry.get(id)
        if record is None:
            raise falcon.HTTPNotFound(description=f"execution {id} not found")
        if byte_mode:
            page = self._registry.read_bytes(id, offset, limit)
        else:
            page = self._registry.read_lines(id, offset, limit)
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
