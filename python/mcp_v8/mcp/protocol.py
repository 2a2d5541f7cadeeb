"""JSON-RPC 2.0 for MCP, shared by the stdio transport and ``POST /mcp``.

Why not the official SDK's server: its Streamable HTTP transport is ASGI only (this service is
WSGI on Waitress, where the SDK's transport does not run as is), its server runs on asyncio
while the execution manager is built on threads, and one small dispatch serving both
transports keeps their behaviour identical. The messages handled are few: ``initialize``,
``ping``, ``tools/list``, ``tools/call`` and the ``notifications/initialized`` and
``notifications/cancelled`` notifications; the tests speak to both transports with the SDK's
own client.
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import dataclass
from typing import Any

from .. import __version__
from ..auth import TOOL_SCOPES, lacks
from ..contract import json_value_problem
from ..operations import Operations
from ..principal import Principal
from .tools import Call, Tool, build_approver_tools, build_tools, call_tool

log = logging.getLogger("mcp_v8.mcp")

SUPPORTED_VERSIONS = ("2025-03-26", "2025-06-18", "2025-11-25")
LATEST_VERSION = SUPPORTED_VERSIONS[-1]
# What a request over HTTP without MCP-Protocol-Version speaks (the specification's rule).
ASSUMED_HTTP_VERSION = "2025-03-26"
# Batches (a JSON array of messages) exist in this revision only.
BATCH_VERSIONS = frozenset({"2025-03-26"})
# Output schemas and structuredContent came with this revision.
STRUCTURED_VERSIONS = frozenset({"2025-06-18", "2025-11-25"})

PARSE_ERROR = -32700
INVALID_REQUEST = -32600
METHOD_NOT_FOUND = -32601
INVALID_PARAMS = -32602
INTERNAL_ERROR = -32603

INSTRUCTIONS = """\
mcp-v8 runs JavaScript and TypeScript in isolated V8 sandboxes. Use run_js; keep state between \
calls by passing the returned `heap` back (or by naming a `session`); tag heaps worth keeping \
with set_heap_tags and find them with query_heaps_by_tags."""


class ProtocolError(Exception):
    """A message that is not valid JSON-RPC, or whose params are malformed: answered with an
    error and no result. ``notification``: the message was a notification, which gets no
    response (stdio logs it; ``POST /mcp`` answers 400, as the transport allows)."""

    def __init__(self, code: int, message: str, id: Any = None, *, notification: bool = False) -> None:
        super().__init__(message)
        self.code = code
        self.id = id
        self.notification = notification


def error_response(id: Any, code: int, message: str) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": id, "error": {"code": code, "message": message}}


def parse(raw: bytes | str) -> Any:
    """A JSON-RPC message or batch from its text. Raises :class:`ProtocolError` (parse error)
    for what is not JSON (``NaN``, ``Infinity`` and numbers beyond a double's range included:
    no client could read them echoed back), nests deeper than the REST API allows, or holds
    text that is not Unicode (a lone surrogate escape, which no later stage can encode)."""
    try:
        message = json.loads(raw, parse_constant=_not_json, parse_float=_finite)
    except RecursionError:
        raise ProtocolError(PARSE_ERROR, "parse error: the message nests too deeply") from None
    except ValueError as e:  # UnicodeDecodeError included
        raise ProtocolError(PARSE_ERROR, f"parse error: {e}") from None
    problem = json_value_problem(message, "the message")
    if problem is not None:
        raise ProtocolError(PARSE_ERROR, f"parse error: {problem}")
    return message


def _not_json(constant: str) -> Any:
    raise ValueError(f"{constant} is not JSON")


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"the number {text[:40]} is beyond the range of a double")
    return value


@dataclass(frozen=True)
class Request:
    id: Any  # None for a notification
    method: str
    params: dict[str, Any]

    @property
    def is_notification(self) -> bool:
        return self.id is None


def classify(message: Any) -> Request | None:
    """The request or notification ``message`` is; None for a response (the server sends
    no requests, so a client's responses need nothing). Raises :class:`ProtocolError` for a
    message that is not JSON-RPC, and for params that are not what the method reads
    (:func:`_check_params`): whatever classify returns, the dispatch can read as it is."""
    if not isinstance(message, dict):
        raise ProtocolError(INVALID_REQUEST, "invalid request: a message must be a JSON object")
    id = _valid_id(message.get("id"))
    if message.get("jsonrpc") != "2.0":
        raise ProtocolError(INVALID_REQUEST, 'invalid request: "jsonrpc" must be "2.0"', id)
    if "method" not in message:
        if "result" in message or "error" in message:
            return None
        raise ProtocolError(INVALID_REQUEST, "invalid request: no method", id)
    method = message["method"]
    if not isinstance(method, str):
        raise ProtocolError(INVALID_REQUEST, "invalid request: method must be a string", id)
    if "id" in message and id is None:
        raise ProtocolError(INVALID_REQUEST, "invalid request: id must be a string or an integer")
    params = message.get("params", {})
    problem = "params must be an object" if not isinstance(params, dict) else _check_params(method, params)
    if problem is not None:
        raise ProtocolError(INVALID_PARAMS, f"invalid params: {problem}", id, notification=id is None)
    return Request(id, method, params)


def _check_params(method: str, params: dict[str, Any]) -> str | None:
    """What is wrong with the params fields the server reads, None when nothing is."""
    meta = params.get("_meta")
    if meta is not None:
        if not isinstance(meta, dict):
            return "_meta must be an object"
        if "progressToken" in meta and not _is_progress_token(meta["progressToken"]):
            return "_meta.progressToken must be a string or a number"
    if method == "initialize":
        if not isinstance(params.get("protocolVersion"), str):
            return "protocolVersion must be a string"
    elif method == "tools/call":
        if not isinstance(params.get("name"), str):
            return "name must be a string"
        if params.get("arguments") is not None and not isinstance(params["arguments"], dict):
            return "arguments must be an object"
    elif method == "tools/list":
        cursor = params.get("cursor")
        if cursor is not None:
            # tools/list has one page and so gives out no cursor: any cursor is not one of ours.
            return "cursor: tools/list has a single page, there is no cursor to continue from"
    elif method == "notifications/cancelled":
        if _valid_id(params.get("requestId")) is None:
            return "requestId must be a string or an integer"
        if params.get("reason") is not None and not isinstance(params["reason"], str):
            return "reason must be a string"
    return None


def _valid_id(id: Any) -> Any:
    """``id`` when it is a request id (a string or an integer), else None."""
    return id if isinstance(id, str) or (isinstance(id, int) and not isinstance(id, bool)) else None


def _is_progress_token(token: Any) -> bool:
    return _valid_id(token) is not None or isinstance(token, float)


def negotiate(requested: Any) -> str:
    """The version to speak: the client's when supported, else the latest (the client then
    decides whether it can)."""
    return requested if requested in SUPPORTED_VERSIONS else LATEST_VERSION


class Server:
    """The MCP server of one service: turns requests into responses."""

    def __init__(self, ops: Operations, *, approver: bool = False) -> None:
        """``approver``: the server of the approver's credential (``--approver-token``, a server
        of one tenant), whose tools are only those that decide held tool calls
        (:func:`.tools.build_approver_tools`). Otherwise the script author's tools and, on a
        server of principals (an auth config or a JWKS), approve_tool_calls; each offered to
        the principals that hold its scope (:data:`mcp_v8.auth.TOOL_SCOPES`)."""
        self.ops = ops
        approving = build_approver_tools(ops)
        self.tools: dict[str, Tool] = approving if approver else build_tools(ops)
        if not approver and ops.settings.auth.enabled:
            self.tools["approve_tool_calls"] = approving["approve_tool_calls"]

    def handle(
        self, request: Request, version: str, call: Call | None = None, principal: Principal | None = None
    ) -> dict[str, Any] | None:
        """The response to ``request`` (None for a notification). ``version``: the protocol
        version of the exchange; ``call``: the tools/call's progress and cancellation;
        ``principal``: whom the request acts for (None: the server's operations' own)."""
        ops = self.ops if principal is None else self.ops.for_principal(principal)
        try:
            result = self._dispatch(ops, request, version, call or Call())
        except ProtocolError as e:
            return None if request.is_notification else error_response(request.id, e.code, str(e))
        except Exception:  # a bug here must cost one request, never the server
            log.exception("MCP request %s failed", request.method)
            if request.is_notification:
                return None
            return error_response(request.id, INTERNAL_ERROR, "internal error")
        if request.is_notification:
            return None
        return {"jsonrpc": "2.0", "id": request.id, "result": result}

    def _dispatch(self, ops: Operations, request: Request, version: str, call: Call) -> dict[str, Any]:
        method, params = request.method, request.params
        if request.is_notification:
            return {}  # initialized, cancelled (the transport handles it), anything else: nothing to say
        if method == "initialize":
            return {
                "protocolVersion": negotiate(params.get("protocolVersion")),
                "capabilities": {"tools": {"listChanged": False}},
                "serverInfo": {
                    "name": "mcp-v8",
                    "title": "mcp-v8 JavaScript sandbox",
                    "version": __version__,
                },
                "instructions": INSTRUCTIONS,
            }
        if method == "ping":
            return {}
        if method == "tools/list":
            structured = version in STRUCTURED_VERSIONS
            offered = [t for t in self.tools.values() if _refusal(ops.principal, t.name) is None]
            return {"tools": [t.listing(structured) for t in offered]}
        if method == "tools/call":
            return self._call(ops, params, version, call)
        raise ProtocolError(METHOD_NOT_FOUND, f"method not found: {method[:100]}")

    def _call(self, ops: Operations, params: dict[str, Any], version: str, call: Call) -> dict[str, Any]:
        name: str = params["name"]  # classify checked it, and arguments
        tool = self.tools.get(name)
        if tool is None:
            raise ProtocolError(INVALID_PARAMS, f"unknown tool: {name[:100]}")
        refusal = _refusal(ops.principal, name)
        if refusal is not None:  # not offered to this principal: an error result naming why
            ops.metrics.mcp_tool_calls.labels(name, "error").inc()
            return {"content": [{"type": "text", "text": refusal}], "isError": True}
        meta = params.get("_meta")
        if isinstance(meta, dict) and isinstance(meta.get("traceparent"), str):
            call.traceparent = meta["traceparent"]
        result = call_tool(ops, tool, params.get("arguments"), call)
        ops.metrics.mcp_tool_calls.labels(name, "error" if result.is_error else "ok").inc()
        text = result.text if result.text is not None else json.dumps(result.structured, ensure_ascii=False)
        out: dict[str, Any] = {"content": [{"type": "text", "text": text}], "isError": result.is_error}
        if version in STRUCTURED_VERSIONS and not (
            result.is_error and "execution_id" not in result.structured
        ):
            out["structuredContent"] = result.structured
        return out


def _refusal(principal: Principal, tool: str) -> str | None:
    """Why ``principal`` may not use ``tool`` (it lacks the tool's scope; a tool the table does
    not name is nobody's), None when it may."""
    scope = TOOL_SCOPES.get(tool)
    if scope is None:
        return f"the tool {tool!r} has no scope: nobody may use it"
    return None if principal.may(scope) else lacks(scope)


def progress_token(request: Request) -> Any:
    """The progress token of a request (``params._meta.progressToken``), None when absent."""
    meta = request.params.get("_meta")
    return meta.get("progressToken") if isinstance(meta, dict) else None
