"""``mcp-v8 mcp``: the MCP server on stdin/stdout, one JSON-RPC message per line.

stdout carries nothing but protocol: the process's file descriptor 1 is pointed at stderr
before anything else runs (so a worker process, a library or a stray print writes to stderr),
and the messages go to a private duplicate of the original stdout.

One reader takes the messages in order and answers all but tool calls itself (ping,
initialize, tools/list, notifications: nothing there waits), so a ``ping`` or a
``notifications/cancelled`` is answered however many ``run_js`` calls wait. Tool calls run
on :class:`.inflight.InFlight`'s threads, a bounded number at once, the rest waiting in order.
Each message is handled under a guard: one that is malformed is answered with a JSON-RPC
error (a notification is logged and ignored), and no message ends the session.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import threading
from collections.abc import Callable
from typing import Any, BinaryIO

from ..operations import Operations
from .client_requests import ClientRequests
from .inflight import InFlight, Reply
from .protocol import (
    BATCH_VERSIONS,
    INTERNAL_ERROR,
    INVALID_REQUEST,
    LATEST_VERSION,
    ProtocolError,
    Request,
    Server,
    classify,
    error_response,
    negotiate,
    parse,
    progress_token,
)
from .tools import Call

log = logging.getLogger("mcp_v8.mcp")

MAX_LINE_BYTES = 64 << 20  # a message longer than this is refused, not buffered further


def claim_stdout() -> BinaryIO:
    """The original stdout, for protocol only; fd 1 becomes a copy of stderr."""
    sys.stdout.flush()
    protocol = os.fdopen(os.dup(1), "wb", buffering=0)  # os.dup: not inherited by workers
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    return protocol


class StdioSession:
    """One client on one pair of streams: the negotiated version, the tool calls in flight
    (at most ``tool_calls`` running at once)."""

    def __init__(
        self, server: Server, out: BinaryIO, *, tool_calls: int, max_line_bytes: int = MAX_LINE_BYTES
    ) -> None:
        self._server = server
        self._out = out
        self._write_lock = threading.Lock()
        self._max_line = max_line_bytes
        self._version = LATEST_VERSION
        self._calls = InFlight(tool_calls, server.ops.cancel)
        self._requests = ClientRequests(self._send)  # elicitation/create, to the client
        self._elicits = False  # the client declared the elicitation capability

    def run(self, stream: BinaryIO) -> None:
        """Serves messages from ``stream`` until it ends. Then the client is gone: the requests
        in flight are cancelled (their executions too) and get no response."""
        try:
            while True:
                line = stream.readline(self._max_line + 1)
                if not line:
                    break
                if len(line) > self._max_line and not line.endswith(b"\n"):
                    self._skip_rest(stream)
                    self._send(
                        error_response(None, INVALID_REQUEST, f"message longer than {self._max_line} bytes")
                    )
                    continue
                if line.strip():
                    self._guarded(line)
        finally:
            self._requests.close()
            self._calls.close()

    def _skip_rest(self, stream: BinaryIO) -> None:
        while True:
            chunk = stream.readline(self._max_line)
            if not chunk or chunk.endswith(b"\n"):
                return

    def _guarded(self, line: bytes) -> None:
        """The last line of defence: a failure in handling one message is logged and answered
        as an internal error without an id, and the next message is read."""
        try:
            self._receive(line)
        except Exception:
            log.exception("MCP message failed: %r", line[:200])
            self._send(error_response(None, INTERNAL_ERROR, "internal error"))

    def _receive(self, line: bytes) -> None:
        try:
            message = parse(line)
        except ProtocolError as e:
            self._send(error_response(None, e.code, str(e)))
            return
        if isinstance(message, dict) and "method" not in message and self._requests.deliver(message):
            return  # a response to a request of ours
        if not isinstance(message, list):
            request = self._classify(message)
            if request is not None:
                self._dispatch(request, self._send)
            return
        if self._version not in BATCH_VERSIONS or not message:
            why = (
                "an empty batch"
                if not message
                else f"batches are not part of protocol version {self._version}"
            )
            self._send(error_response(None, INVALID_REQUEST, f"invalid request: {why}"))
            return
        # Every message is checked before any runs: one that is malformed refuses the batch,
        # as POST /mcp does.
        try:
            requests = [r for r in (classify(m) for m in message) if r is not None]
        except ProtocolError as e:
            self._send(error_response(e.id, e.code, str(e)))
            return
        batch = _Batch(sum(not r.is_notification for r in requests), self._send)
        for request in requests:
            self._dispatch(request, batch.reply)

    def _classify(self, message: Any) -> Request | None:
        try:
            return classify(message)
        except ProtocolError as e:
            if e.notification:  # a notification is never answered, even to say it is wrong
                log.warning("ignored a malformed notification: %s", e)
            else:
                self._send(error_response(e.id, e.code, str(e)))
            return None

    def _dispatch(self, request: Request, reply: Reply) -> None:
        """Answers ``request`` through ``reply``: at once, or when its tool call has run."""
        if request.is_notification:
            if request.method == "notifications/cancelled":
                self._calls.cancel(request.params["requestId"])
            return
        if request.method == "tools/call":
            call = Call()
            if self._elicits:
                call.elicit = self._elicit(call)
            token = progress_token(request)
            if token is not None:
                call.progress = self._progress_sender(token)
            version = self._version  # the version in force when the request was read
            # Registered here, in order: a cancel read right behind its request finds the call.
            if not self._calls.add(
                request.id, call, lambda: self._server.handle(request, version, call), reply
            ):
                reply(_in_use(request.id))
            return
        if self._calls.holds(request.id):
            reply(_in_use(request.id))
            return
        if request.method == "initialize":  # in order: later messages speak its version
            self._version = negotiate(request.params["protocolVersion"])
            capabilities = request.params.get("capabilities")
            self._elicits = isinstance(capabilities, dict) and isinstance(
                capabilities.get("elicitation"), dict
            )
        reply(self._server.handle(request, self._version))

    def _elicit(self, call: Call) -> Callable[[dict[str, Any], float], dict[str, Any]]:
        def elicit(params: dict[str, Any], timeout: float) -> dict[str, Any]:
            return self._requests.request("elicitation/create", params, timeout, call.cancelled)

        return elicit

    def _progress_sender(self, token: Any) -> Any:
        count = 0

        def send(text: str) -> None:
            nonlocal count
            count += 1
            params = {"progressToken": token, "progress": count, "message": text}
            self._send({"jsonrpc": "2.0", "method": "notifications/progress", "params": params})

        return send

    def _send(self, message: Any) -> None:
        if message is None:
            return
        data = json.dumps(message, ensure_ascii=False, separators=(",", ":")).encode("utf-8") + b"\n"
        with self._write_lock:
            try:
                self._out.write(data)
                self._out.flush()
            except (BrokenPipeError, ValueError):  # the client went away; the reader sees EOF
                pass


def _in_use(id: Any) -> dict[str, Any]:
    """The answer to a request under an id a call in flight has: that call keeps it."""
    shown = json.dumps(id, ensure_ascii=False)
    if len(shown) > 100:
        shown = shown[:100] + "..."
    return error_response(
        id, INVALID_REQUEST, f"invalid request: id {shown} is in use by a request in flight"
    )


class _Batch:
    """The responses of one batch, sent together as one array once each request is answered
    (a cancelled one is not)."""

    def __init__(self, requests: int, send: Callable[[Any], None]) -> None:
        self._lock = threading.Lock()
        self._left = requests
        self._responses: list[dict[str, Any]] = []
        self._send = send

    def reply(self, response: dict[str, Any] | None) -> None:
        with self._lock:
            if response is not None:
                self._responses.append(response)
            self._left -= 1
            if self._left or not self._responses:
                return
        self._send(self._responses)


def serve_stdio(ops: Operations, stdin: BinaryIO, stdout: BinaryIO) -> None:
    """Serves one MCP client on ``stdin``/``stdout`` until stdin ends."""
    StdioSession(Server(ops), stdout, tool_calls=ops.settings.mcp_tool_calls).run(stdin)
