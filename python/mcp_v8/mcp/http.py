"""``POST /mcp``: MCP's Streamable HTTP transport, in its plain-JSON form.

Every POST is answered with one ``application/json`` body (a response, or an array of them for
a batch), or 202 with none when it held only notifications and responses. The server offers
no SSE stream and issues no session id, so GET and DELETE are 405. Host, Origin (403) and
bearer token are checked by the app's middleware as on every route (the approver's token, too,
which gets the approver's tools only: :func:`.tools.build_approver_tools`); here: ``Content-Type``
(415 unless ``application/json``, parameters allowed, as the MCP SDK's own server answers),
``MCP-Protocol-Version`` (400 when unsupported; absent means 2025-03-26), the body limit, and
JSON-RPC (the checks of :func:`.protocol.classify`, shared with stdio).
Without a stream there is no progress, and ``notifications/cancelled`` needs no answer: a
client cancels an execution with the cancel_execution tool.
"""

from __future__ import annotations

import json
from typing import Any

import falcon

from ..operations import Operations
from .protocol import (
    ASSUMED_HTTP_VERSION,
    BATCH_VERSIONS,
    INVALID_REQUEST,
    SUPPORTED_VERSIONS,
    ProtocolError,
    Server,
    classify,
    error_response,
    parse,
)

UNSUPPORTED_MEDIA_TYPE = "Unsupported Media Type: Content-Type must be application/json"


def is_json(content_type: str | None) -> bool:
    """Whether a Content-Type header names ``application/json`` (any parameters, any case)."""
    return content_type is not None and content_type.split(";", 1)[0].strip().lower() == "application/json"


def _answer(resp: falcon.Response, status: str, body: Any) -> None:
    resp.status = status
    resp.content_type = falcon.MEDIA_JSON
    resp.data = json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


class McpResource:
    def __init__(self, ops: Operations) -> None:
        self._server = Server(ops)
        # The approver's credential gets a server of its own tools (the middleware says which).
        self._approver = Server(ops, approver=True) if ops.settings.approver_token else None
        self._max_body = ops.settings.max_body_bytes

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        raise falcon.HTTPMethodNotAllowed(
            ["POST"], description="this server offers no SSE stream: POST JSON-RPC messages to /mcp"
        )

    on_delete = on_get

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        if not is_json(req.content_type):
            _answer(resp, falcon.HTTP_415, error_response(None, INVALID_REQUEST, UNSUPPORTED_MEDIA_TYPE))
            return
        given = req.get_header("MCP-Protocol-Version")  # absent, not empty, means the oldest
        version = ASSUMED_HTTP_VERSION if given is None else given.strip()
        if version not in SUPPORTED_VERSIONS:
            shown = version[:40]
            _answer(
                resp,
                falcon.HTTP_400,
                error_response(
                    None,
                    INVALID_REQUEST,
                    f"unsupported MCP-Protocol-Version {shown!r}; supported: {', '.join(SUPPORTED_VERSIONS)}",
                ),
            )
            return
        raw = req.bounded_stream.read(self._max_body + 1)
        if len(raw) > self._max_body:
            raise falcon.HTTPContentTooLarge(
                description=f"request body is larger than {self._max_body} bytes"
            )
        try:
            message = parse(raw)
        except ProtocolError as e:
            _answer(resp, falcon.HTTP_400, error_response(None, e.code, str(e)))
            return
        if isinstance(message, list):
            if version not in BATCH_VERSIONS or not message:
                why = (
                    "an empty batch" if not message else f"batches are not part of protocol version {version}"
                )
                _answer(
                    resp, falcon.HTTP_400, error_response(None, INVALID_REQUEST, f"invalid request: {why}")
                )
                return
            # Every message is checked before any runs: one that is not JSON-RPC refuses the batch.
            requests = []
            for item in message:
                try:
                    requests.append(classify(item))
                except ProtocolError as e:
                    _answer(resp, falcon.HTTP_400, error_response(e.id, e.code, str(e)))
                    return
            server = self._server_for(req)
            principal = req.context.get("principal")
            responses = [
                r
                for r in (server.handle(q, version, principal=principal) for q in requests if q is not None)
                if r is not None
            ]
            if not responses:
                resp.status = falcon.HTTP_202
                return
            _answer(resp, falcon.HTTP_200, responses)
            return
        try:
            request = classify(message)
        except ProtocolError as e:  # not JSON-RPC: the client's mistake, as a bad REST body is
            _answer(resp, falcon.HTTP_400, error_response(e.id, e.code, str(e)))
            return
        response = (
            None
            if request is None
            else self._server_for(req).handle(request, version, principal=req.context.get("principal"))
        )
        if response is None:
            resp.status = falcon.HTTP_202
            return
        _answer(resp, falcon.HTTP_200, response)

    def _server_for(self, req: falcon.Request) -> Server:
        if self._approver is not None and req.context.get("approver"):
            return self._approver
        return self._server
